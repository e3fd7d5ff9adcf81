"""What signing costs a run, end to end against the local stack (./dev sign-bench).

Usage: sign_bench.py API TOKEN LEVEL RUNS LOG

Creates the sample invoice configuration (events/samples/invoice-configuration.json) with a
LEVEL signature (B-B, B-T, B-LT), launches RUNS runs one after the other, waits for each, then
reads the local API's log (LOG) for the metrics those runs emitted: per signed PDF
SigningDuration (wall: Vault's signature, the TSA, CRLs included) and SigningOwnDuration (without
those waits), per run RunDuration. Prints the medians and worst, and signing's share of a run.
"""

import json
import os
import statistics
import sys
import time
import urllib.request


def call(api, token, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(api + path, data=data, method=method)
    request.add_header("Authorization", f"Bearer {token}")
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=60) as answer:
        return json.loads(answer.read() or b"null")


def read_metrics(log, ids):
    wall, own, duration = [], [], []
    with open(log) as f:
        for line in f:
            if "Duration" not in line or not line.startswith("{"):
                continue
            record = json.loads(line)
            if record.get("runId") not in ids:
                continue
            if "SigningDuration" in record:
                wall.append(record["SigningDuration"])
                own.append(record["SigningOwnDuration"])
            if "RunDuration" in record and record.get("Outcome") == "completed":
                duration.append(record["RunDuration"])
    return wall, own, duration


def main() -> int:
    api, token, level, runs, log = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
    root = os.environ["ROOT"]
    with open(f"{root}/events/samples/invoice-configuration.json") as f:
        configuration = json.load(f)
    configuration["name"] = f"signing benchmark {level} {time.time():.0f}"
    configuration["documents"][0]["signature"] = {"level": level, "reason": "Benchmark"}
    seed = dict(configuration["defaults"])
    for name in ("logo.png", "docbundle-sans.ttf"):
        with open(f"{root}/events/samples/assets/{name}", "rb") as f:
            upload = urllib.request.Request(
                f"{api}/api/v1/assets?name={name}", data=f.read(), method="POST"
            )
        upload.add_header("Authorization", f"Bearer {token}")
        urllib.request.urlopen(upload, timeout=60).read()
    config = call(api, token, "POST", "/api/v1/configurations", configuration)
    ids = []
    for i in range(runs):
        seed["number"] = f"INV-BENCH-{i}"
        run = call(api, token, "POST", "/api/v1/bundles", {"configurationId": config["id"], "seed": seed})
        while run["status"] not in ("completed", "failed"):
            time.sleep(0.2)
            run = call(api, token, "GET", f"/api/v1/bundles/{run['id']}")
        if run["status"] != "completed":
            print(f"run {run['id']} failed: {run.get('error')}")
            return 1
        ids.append(run["id"])
    # A run's duration is logged just after it shows completed: wait for the last lines.
    for _ in range(50):
        wall, own, duration = read_metrics(log, ids)
        if len(wall) == runs and len(duration) == runs:
            break
        time.sleep(0.2)
    if len(wall) != runs or len(duration) != runs:
        print(f"metrics missing: {len(wall)} signatures, {len(duration)} runs for {runs} runs")
        return 1
    share = statistics.median(w / d for w, d in zip(wall, duration))
    print(f"{runs} runs of the sample invoice signed {level} (one PDF each):")
    print(f"  signing, wall (Vault, TSA, CRLs included): median {statistics.median(wall):.1f} ms, worst {max(wall):.1f} ms")
    print(f"  signing, our own:                          median {statistics.median(own):.1f} ms, worst {max(own):.1f} ms")
    print(f"  whole run:                                 median {statistics.median(duration):.1f} ms, worst {max(duration):.1f} ms")
    print(f"  signing's share of a run:                  median {share * 100:.1f} %")
    return 0


sys.exit(main())
