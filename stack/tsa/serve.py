"""The local time-stamping authority: certomancer's Animator (RFC 3161 time-stamps, CRLs,
certificates) for the test PKI in certomancer.yml, served by waitress, as a real TSA serves
its clients: many at once (`certomancer animate` serves one connection at a time, so a single
stalled client would stall every other) and over kept-alive HTTP/1.1 connections (werkzeug's
server closes each one after its answer, which made every time-stamp open a new connection).
Usage: serve.py CONFIG.yml PORT"""

import sys

from certomancer.integrations.animator import Animator, AnimatorArchStore
from certomancer.registry import CertomancerConfig
from waitress import serve

config = CertomancerConfig.from_file(sys.argv[1])
app = Animator(AnimatorArchStore(config.pki_archs), with_web_ui=False)
serve(app, host="127.0.0.1", port=int(sys.argv[2]), threads=8, ident="local-tsa")
