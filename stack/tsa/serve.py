"""The local time-stamping authority: certomancer's Animator (RFC 3161 time-stamps, CRLs,
certificates) for the test PKI in certomancer.yml, served by a threaded WSGI server, as a real
TSA answers many clients at once (`certomancer animate` serves one connection at a time, so
a single stalled client would stall every other).
Usage: serve.py CONFIG.yml PORT"""

import sys

from certomancer.integrations.animator import Animator, AnimatorArchStore
from certomancer.registry import CertomancerConfig
from werkzeug.serving import run_simple

config = CertomancerConfig.from_file(sys.argv[1])
app = Animator(AnimatorArchStore(config.pki_archs), with_web_ui=False)
run_simple("127.0.0.1", int(sys.argv[2]), app, threaded=True)
