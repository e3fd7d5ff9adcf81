"""How long a dependency's blip, or a crash of the local API, costs the runs it catches.

Usage (through ./dev blip): blip.py API TOKEN NAME FREEZE_SECONDS RUNS PID...

A dependency (NAME localstack, openbao, postgres): freezes the processes PID... (SIGSTOP: the
dependency stops answering, its connections stay open), launches RUNS runs of the sample
statement configuration concurrently, thaws the processes after FREEZE_SECONDS.

The local API itself (NAME local-api, PID its process): launches RUNS runs of the sample
invoice (PDF), kills the API with SIGKILL as soon as some are being processed, and starts it
again (`./dev up`).

Launches are made as a careful client makes them: a `503` is retried after its `Retry-After`
with the same `Idempotency-Key`. Every answer's time is counted (target: none over 5 s).

Then waits for every run to complete, and prints how long after the return each one completed
(median and worst), and whether any was lost, failed or done twice.
"""

import concurrent.futures
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request


def call(api: str, token: str, method: str, path: str, body=None, timeout=60, headers=None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        api + path,
        data=data,
        method=method,
        headers={"Authorization": f"Bearer {token}", "content-type": "application/json",
                 **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def retry_after(api: str, token: str, path: str, body, key: str):
    """POSTs as a careful client does: a 503 is retried after its Retry-After, with the same
    Idempotency-Key, for up to a minute. (status, body, [seconds each answer took])."""
    answers = []
    give_up = time.monotonic() + 60
    while True:
        data = json.dumps(body).encode()
        request = urllib.request.Request(
            api + path, data=data, method="POST",
            headers={"Authorization": f"Bearer {token}", "content-type": "application/json",
                     "Idempotency-Key": key},
        )
        started = time.monotonic()
        try:
            with urllib.request.urlopen(request, timeout=60) as answer:
                answers.append(time.monotonic() - started)
                return answer.status, json.loads(answer.read() or b"null"), answers
        except urllib.error.HTTPError as e:
            answers.append(time.monotonic() - started)
            payload = json.loads(e.read() or b"null")
            wait = e.headers.get("Retry-After")
            if e.code != 503 or wait is None or time.monotonic() > give_up:
                return e.code, payload, answers
            time.sleep(float(wait))


def signal_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def main() -> None:
    api, token, name, freeze, runs, *pids = sys.argv[1:]
    freeze_s, n = float(freeze), int(runs)
    pids = [int(p) for p in pids]
    root = os.environ["ROOT"]
    crash = name == "local-api"
    sample = "invoice-configuration.json" if crash else "statement-configuration.json"
    if crash:
        assets = os.path.join(root, "events/samples/assets")
        for asset in ("logo.png", "docbundle-sans.ttf"):
            request = urllib.request.Request(
                f"{api}/api/v1/assets?name={asset}",
                data=open(os.path.join(assets, asset), "rb").read(),
                method="POST",
                headers={"Authorization": f"Bearer {token}"},
            )
            urllib.request.urlopen(request, timeout=60).read()
    config = json.load(open(os.path.join(root, "events/samples", sample)))
    config["name"] = f"Blip {time.time_ns()}"
    status, created = call(api, token, "POST", "/api/v1/configurations", config)
    if status != 201:
        sys.exit(f"could not create the configuration: {status} {created}")

    def launch(i: int):
        seed = dict(config.get("defaults") or {})
        # A seed of its own per run (the invoice's number, the statement's merchant).
        unique = f"blip-{time.time_ns()}-{i}"
        if "number" in seed:
            seed["number"] = unique
            # A page of lines: runs are being rendered when the API is killed, and 40 of them
            # take a few seconds in all.
            seed["lines"] = [{"description": f"Line {n}", "quantity": n, "unitPrice": 1.25}
                             for n in range(1, 25)]
        else:
            seed["merchant"] = {"name": unique}
        return retry_after(api, token, "/api/v1/bundles",
                           {"configurationId": created["id"], "seed": seed}, unique)

    if crash:
        with concurrent.futures.ThreadPoolExecutor(max_workers=min(n, 16)) as pool:
            launched = list(pool.map(launch, range(n)))
        ids = [body["id"] for status, body, _ in launched if status == 202]
        while True:
            states = [call(api, token, "GET", f"/api/v1/bundles/{i}")[1]["status"] for i in ids]
            if "processing" in states or all(s in ("completed", "failed") for s in states):
                break
        signal_all(pids, signal.SIGKILL)
        print(f"killed the local API with {states.count('processing')} runs processing, "
              f"{states.count('pending')} pending, "
              f"{states.count('completed') + states.count('failed')} ended")
        restarted = time.monotonic()
        subprocess.run([os.path.join(root, "dev"), "up"], check=True, capture_output=True)
        returned = time.monotonic()
        print(f"local API back after {returned - restarted:.1f} s")
    else:
        print(f"freezing {name} ({len(pids)} processes) for {freeze_s:.0f} s; launching {n} runs")
        frozen_at = time.monotonic()
        signal_all(pids, signal.SIGSTOP)
        # Thawed on time, whatever the launches (retried after 503s) are doing then.
        thaw = threading.Timer(freeze_s, signal_all, (pids, signal.SIGCONT))
        thaw.start()
        try:
            with concurrent.futures.ThreadPoolExecutor(max_workers=min(n, 16)) as pool:
                launched = list(pool.map(launch, range(n)))
            thaw.join()
        finally:
            thaw.cancel()
            signal_all(pids, signal.SIGCONT)
        returned = frozen_at + freeze_s
        print(f"{name} back after {freeze_s:.1f} s; the last launch was answered "
              f"{time.monotonic() - returned:.1f} s after that")

    accepted = [body["id"] for status, body, _ in launched if status == 202]
    refused = [(status, body) for status, body, _ in launched if status != 202]
    launch_times = sorted(t for _, _, answers in launched for t in answers)
    retried = [answers for _, _, answers in launched if len(answers) > 1]
    print(f"launches: {len(accepted)} accepted, {len(refused)} refused in the end; "
          f"{len(retried)} were first answered 503 and retried after Retry-After "
          f"(up to {max((len(a) for a in retried), default=1)} calls each, same Idempotency-Key)")
    print(f"every answer: {len(launch_times)} calls, median {statistics.median(launch_times):.2f} s, "
          f"worst {launch_times[-1]:.2f} s (target: none over 5 s)")
    for status, body in refused[:3]:
        print(f"  refused: {status} {json.dumps(body)[:200]}")

    done: dict[str, float] = {}
    ended: dict[str, str] = {}
    attempts: dict[str, int] = {}
    deadline = returned + 600
    while len(ended) < len(accepted) and time.monotonic() < deadline:
        for run_id in accepted:
            if run_id in ended:
                continue
            status, run = call(api, token, "GET", f"/api/v1/bundles/{run_id}")
            if status == 200 and run["status"] in ("completed", "failed"):
                ended[run_id] = run["status"]
                done[run_id] = time.monotonic() - returned
                attempts[run_id] = run.get("attempts", 0)
        time.sleep(0.5)
    after = sorted(done.values())
    failed = [r for r, s in ended.items() if s == "failed"]
    lost = len(accepted) - len(ended)
    if after:
        print(f"completed after the return: median {statistics.median(after):.1f} s, "
              f"worst {after[-1]:.1f} s (target: every run within 30 s)")
    retried = sorted(a for a in attempts.values() if a > 1)
    print(f"failed: {len(failed)}, not finished after 600 s: {lost}; "
          f"{len(retried)} runs took more than one attempt (at most {max(retried, default=1)})")
    if failed or lost:
        sys.exit(1)


if __name__ == "__main__":
    main()
