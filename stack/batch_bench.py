"""What a month-end batch costs and what it does to everyone else, against the running local API.

Usage (through ./dev bench-batch): batch_bench.py API TOKEN RUNS API_PID DATABASE_URL CLI [pdf]

With `pdf`, the batch is of the sample invoice (a 1-page PDF and a CSV per run, its assets
uploaded first) instead of the 3-document text bundle.

1. Idle: 10 interactive runs of a 3-document text configuration, one after the other; their
   launch -> completed times.
2. A batch of RUNS seeds of the same configuration (uploaded to the presigned URL, started).
   While it runs, one interactive run every 2 s; their launch -> completed times.
3. When the batch has ended: runs/s, p50/p99 launch (the batch's start) -> completed of its runs
   and of each run's own createdAt -> completedAt, our CPU per run (the local API's process and
   its rendering processes, from /proc, over the batch), peak memory (VmHWM) of each of those
   processes, and the transparency log's integration lag (entry sequenced - run completed, from
   the database). Checks: every line one run, every run completed, each in the log once, one
   batch.completed delivery, and every checkpoint signed while the batch ran consistent with the
   one before (`docbundle transparency monitor`, every 5 s, verifies each step's proof).

Prints figures; exits non-zero only if a run is lost, doubled, failed or unlogged.
"""

import json
import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime


def call(api, token, method, path, body=None, timeout=60, raw=None, content_type="application/json"):
    data = json.dumps(body).encode() if body is not None else raw
    request = urllib.request.Request(
        api + path,
        data=data,
        method=method,
        headers={"Authorization": f"Bearer {token}", "content-type": content_type},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def when(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(round((len(values) - 1) * q)))]


def tree(pid):
    """The process and its children (the rendering processes)."""
    pids = [pid]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid:
                    pids.append(int(entry))
            except OSError:
                pass
    return pids


def cpu_seconds(pid):
    """utime + stime of the process and its live children, in seconds."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return total / ticks


def peak_memory(pid):
    out = []
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                status = dict(line.split(":", 1) for line in f if ":" in line)
            with open(f"/proc/{p}/cmdline", "rb") as f:
                name = f.read().split(b"\0")[0].decode(errors="replace").rsplit("/", 1)[-1]
            out.append((p, name, status["VmHWM"].strip(), status["VmRSS"].strip()))
        except (OSError, KeyError):
            pass
    return out


def interactive(api, token, configuration, n):
    status, run = call(api, token, "POST", "/api/v1/bundles", {"configurationId": configuration, "seed": seed(n)})
    assert status == 202, (status, run)
    while True:
        status, run = call(api, token, "GET", f"/api/v1/bundles/{run['id']}")
        if run["status"] in ("completed", "failed"):
            assert run["status"] == "completed", run
            return when(run["completedAt"]) - when(run["createdAt"])
        time.sleep(0.02)


def seed(n):
    return {"n": n, "name": f"Customer {n}", "lines": [{"item": f"Item {i}", "amount": i * 3 + n % 100} for i in range(5)]}


CONFIG = {
    "name": "Month-end statements",
    "dataSchema": {"type": "object", "required": ["n", "name"]},
    "documents": [
        {"name": "statement.txt", "format": "txt", "template": "Statement for {{ data.name }} (#{{ data.n }})\n{% for l in data.lines %}{{ l.item }}: {{ l.amount }}\n{% endfor %}"},
        {"name": "lines.csv", "format": "csv", "template": "item,amount\n{% for l in data.lines %}{{ l.item }},{{ l.amount }}\n{% endfor %}"},
        {"name": "summary.md", "format": "md", "template": "# {{ data.name }}\n\n{{ data.lines|length }} lines, total {{ data.lines|map(attribute='amount')|sum }}\n"},
    ],
}


def invoice(n):
    return {"number": f"INV-{n:06d}", "customer": {"name": f"Customer {n}", "address": f"{n} Example Street"},
            "period": "2026-11", "currency": "EUR",
            "lines": [{"description": f"Service {i}", "quantity": i + 1, "unitPrice": 10.5 + n % 50} for i in range(3)]}


def upload_assets(api, token):
    folder = os.path.join(os.environ["ROOT"], "events", "samples", "assets")
    for name in ("logo.png", "docbundle-sans.ttf"):
        with open(os.path.join(folder, name), "rb") as f:
            status, answer = call(api, token, "POST", f"/api/v1/assets?name={name}", raw=f.read(), content_type="application/octet-stream")
        assert status in (200, 201), (status, answer)


def monitor(api, token, cli, state):
    """One step of the log monitor: the newest checkpoint, consistent with the last one seen."""
    env = dict(os.environ, DOCBUNDLE_TOKEN=token, DOCBUNDLE_CONFIG_DIR=state + ".config")
    done = subprocess.run([cli, "--api", api, "transparency", "monitor", "--state", state],
                          env=env, capture_output=True, text=True)
    return done.returncode, (done.stdout + done.stderr).strip()


def main():
    global seed
    api, token, runs, api_pid, database_url, cli = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6]
    pdf = len(sys.argv) > 7 and sys.argv[7] == "pdf"
    config = CONFIG
    if pdf:
        upload_assets(api, token)
        with open(os.path.join(os.environ["ROOT"], "events", "samples", "invoice-configuration.json")) as f:
            config = json.load(f)
        seed = invoice
    status, created = call(api, token, "POST", "/api/v1/configurations", config)
    assert status == 201, (status, created)
    configuration = created["id"]
    status, hook = call(api, token, "POST", "/api/v1/webhook-endpoints",
                        {"url": "http://127.0.0.1:9/batch-bench", "events": ["batch.completed"]})
    assert status == 201, (status, hook)
    state = f"/tmp/docbundle-batch-bench-{os.getpid()}.checkpoint"
    monitored = []

    interactive(api, token, configuration, 0)  # warm
    idle = [interactive(api, token, configuration, n) for n in range(1, 11)]
    print(f"interactive run, idle: median {statistics.median(idle) * 1000:.0f} ms, worst {max(idle) * 1000:.0f} ms (10 runs)")

    status, batch = call(api, token, "POST", "/api/v1/batches", {"configurationId": configuration})
    assert status == 201, (status, batch)
    body = "".join(json.dumps(seed(n)) + "\n" for n in range(1, runs + 1)).encode()
    upload = urllib.request.Request(batch["upload"]["url"], data=body, method="PUT")
    with urllib.request.urlopen(upload, timeout=300) as answer:
        assert answer.status == 200, answer.status
    cpu_before = cpu_seconds(api_pid)
    t0 = time.time()
    status, started = call(api, token, "POST", f"/api/v1/batches/{batch['id']}/start")
    assert status == 202, (status, started)
    print(f"batch of {runs} {'invoice (PDF)' if pdf else 'text-bundle'} seeds ({len(body)} bytes) started")

    during = []
    done = threading.Event()

    def probe():
        n = 10_000_000
        while not done.is_set():
            n += 1
            during.append(interactive(api, token, configuration, n))
            done.wait(2)

    prober = threading.Thread(target=probe)
    prober.start()
    last = 0
    last_monitor = 0
    while True:
        if time.time() - last_monitor > 5:
            monitored.append(monitor(api, token, cli, state))
            last_monitor = time.time()
        status, view = call(api, token, "GET", f"/api/v1/batches/{batch['id']}")
        if view["status"] in ("completed", "cancelled", "failed"):
            break
        ended = view["totals"]["completed"] + view["totals"]["failed"]
        if time.time() - last > 10:
            print(f"  {ended}/{view['totals']['runs']} runs ended, {view['totals']['lines']} lines read, rate {view.get('rate') or 0:.1f}/s", flush=True)
            last = time.time()
        time.sleep(0.5)
    wall = time.time() - t0
    cpu = cpu_seconds(api_pid) - cpu_before
    done.set()
    prober.join()
    totals = view["totals"]
    print(f"batch {view['status']}: {totals}")
    time.sleep(7)  # the last completions' log entries: the local scheduler sequences every 3 s
    monitored.append(monitor(api, token, cli, state))
    checked = [m for m in monitored if m[0] == 0 and "consistent with" in m[1]]
    forked = [m for m in monitored if m[0] == 4]
    print(f"log: {len(monitored)} monitor steps, {len(checked)} checkpoints verified (each consistent with the one before), {len(forked)} inconsistent")
    for code, text in monitored:
        if code not in (0,):
            print(f"  monitor exit {code}: {text[:300]}")

    rows = subprocess.run(
        ["psql", database_url, "-At", "-F", ",", "-c",
         f"""SELECT r.batch_line, r.status,
                    EXTRACT(EPOCH FROM r.completed_at - b.started_at),
                    EXTRACT(EPOCH FROM r.completed_at - r.created_at),
                    (SELECT count(*) FROM transparency_entries e WHERE e.run_id = r.id),
                    (SELECT EXTRACT(EPOCH FROM e.created_at - r.completed_at) FROM transparency_entries e WHERE e.run_id = r.id)
               FROM bundle_runs r JOIN batches b ON b.id = r.batch_id
              WHERE r.batch_id = '{batch['id']}'"""],
        capture_output=True, text=True, check=True,
    ).stdout.split()
    lines, statuses, from_start, own, logged, lag = [], [], [], [], [], []
    for row in rows:
        line, state, a, b, count, c = row.split(",")
        lines.append(int(line))
        statuses.append(state)
        from_start.append(float(a))
        own.append(float(b))
        logged.append(int(count))
        if c:
            lag.append(float(c))
    lost = runs - len(set(lines))
    doubled = len(lines) - len(set(lines))
    failed = sum(1 for s in statuses if s != "completed")
    unlogged = sum(1 for c in logged if c != 1)
    deliveries = int(subprocess.run(
        ["psql", database_url, "-At", "-c",
         f"SELECT count(*) FROM webhook_deliveries WHERE run_id = '{batch['id']}' AND event_type = 'batch.completed'"],
        capture_output=True, text=True, check=True).stdout.strip())
    listeners = int(subprocess.run(
        ["psql", database_url, "-At", "-c",
         f"SELECT count(*) FROM webhook_endpoints e JOIN batches b ON b.merchant_id = e.merchant_id "
         f"WHERE b.id = '{batch['id']}' AND e.enabled AND ('batch.completed' = ANY (e.events) OR '*' = ANY (e.events))"],
        capture_output=True, text=True, check=True).stdout.strip())
    print(f"runs: {len(lines)} made for {runs} lines: {lost} lost, {doubled} doubled, {failed} not completed, {unlogged} not in the log once; "
          f"{deliveries} batch.completed deliveries for {listeners} listening endpoints")
    elapsed = max(from_start)
    print(f"throughput: {len(lines) / elapsed:.1f} runs/s (start -> last completed {elapsed:.1f} s; wall with polling {wall:.1f} s)")
    print(f"batch start -> completed: p50 {pct(from_start, 0.5):.1f} s, p99 {pct(from_start, 0.99):.1f} s")
    print(f"each run's own queued -> completed: p50 {pct(own, 0.5) * 1000:.0f} ms, p99 {pct(own, 0.99) * 1000:.0f} ms")
    print(f"our CPU per run: {cpu / max(len(lines), 1) * 1000:.2f} ms (local API + rendering processes, {cpu:.1f} s over the batch, interactive probes and fan-out included)")
    if lag:
        print(f"log integration lag (sequenced - completed): p50 {pct(lag, 0.5):.2f} s, p99 {pct(lag, 0.99):.2f} s, max {max(lag):.2f} s")
    if during:
        ratio = statistics.median(during) / statistics.median(idle)
        print(f"interactive run during the batch: median {statistics.median(during) * 1000:.0f} ms, worst {max(during) * 1000:.0f} ms ({len(during)} runs) = {ratio:.2f}x idle (target <= 2x)")
    for pid, name, hwm, rss in peak_memory(api_pid):
        print(f"peak memory: {name} (pid {pid}) {hwm} (now {rss})")
    if lost or doubled or failed or unlogged or forked or deliveries != listeners:
        sys.exit(1)


if __name__ == "__main__":
    main()
