"""An auditor's check of one merchant's log from its C2SP tlog-tiles alone, with a reader
no one on this project wrote (PyPI aics-tlog, run as its own command line would run it):

    tlog_audit.py TILES_URL LOG_VKEY ORIGIN MANIFESTS_DIR [WITNESS_VKEY...]

MANIFESTS_DIR holds `<log index>.json`: each run's manifest as downloaded with its bundle.
The checkpoint is verified with the log's verifier key (obtained out of band) and, with
witness keys, must carry a valid cosignature by every one of them (quorum = their number);
then every
manifest is proven included at its index by tiles fetched from TILES_URL, and the entry the
tiles hold at that index must be its exact bytes. Prints one JSON line of figures; exits 1
with aics-tlog's report of the first failure.
"""

import contextlib
import io
import json
import os
import sys
import tempfile

from aics_tlog.cli import main as aics


def run(argv):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = aics(argv)
    return code, out.getvalue().strip()


def fail(what, report):
    print(json.dumps({"ok": False, "failed": what, "report": report}))
    sys.exit(1)


def audit(tiles, vkey, origin, manifests, *witnesses):
    key = ["--tiles", tiles, "--log-key", vkey, "--origin", origin]
    cosigned = [arg for w in witnesses for arg in ("--witness-key", w)]
    if witnesses:
        cosigned += ["--quorum", str(len(witnesses))]
    code, report = run(["verify-checkpoint", *key, *cosigned])
    if code != 0:
        fail("checkpoint", report)
    verified = json.loads(report.splitlines()[-1])
    size = verified.get("size")
    checked = 0
    with tempfile.TemporaryDirectory() as scratch:
        for name in sorted(os.listdir(manifests), key=lambda n: int(n.split(".")[0])):
            index = name.split(".")[0]
            path = os.path.join(manifests, name)
            entry = os.path.join(scratch, "entry")
            code, report = run(["verify-inclusion", *key, "--leaf", path, "--index", index,
                                "--entry-out", entry])
            if code != 0:
                fail(f"inclusion of {name}", report)
            with open(path, "rb") as a, open(entry, "rb") as b:
                if a.read() != b.read():
                    fail(f"entry {index}", "the tiles' entry is not the downloaded manifest")
            checked += 1
    print(json.dumps({"ok": True, "size": size, "inclusions": checked,
                      "cosignatures": verified.get("cosignatures"),
                      "witnesses": verified.get("witnesses")}))


if __name__ == "__main__":
    if len(sys.argv) < 5:
        sys.exit(__doc__)
    audit(*sys.argv[1:])
