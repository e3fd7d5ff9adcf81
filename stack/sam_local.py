"""Helpers for `./dev sam`: what a function run by `sam local` needs to reach the local stack.

Inside a podman container the host's loopback services are 10.0.2.2 (slirp4netns with
allow_host_loopback). The functions start as on AWS: their credentials come from a Secrets
Manager secret (here LocalStack's), named by SECRETS_ARN; everything else is a template
parameter or a variable the template declares.

  secret                 create or update the secret, print its ARN
  overrides ARN          print --parameter-overrides for the template
  env-vars FILE          write the --env-vars file (the template's resource references)
  event IN OUT [CLIENT]  copy an event, filling in a fresh token for CLIENT (merchant-a)
  events                 every event in events/ through `sam local invoke`, each against
                         real data (SAM_ARGS_JSON: the arguments every sam local command takes)
  cycle API              launch through `sam local start-api` at API, the worker through
                         `sam local invoke` on the message from the queue, the run completed
"""

import base64
import hashlib
import hmac
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

HOST = "10.0.2.2"
SECRET_NAME = "docbundle/sam-local"


def in_container(url: str) -> str:
    """`url` as a function in a container reaches it: the host's loopback becomes 10.0.2.2."""
    parts = urllib.parse.urlsplit(url)
    netloc = parts.netloc.replace("127.0.0.1", HOST).replace("localhost", HOST)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def aws(service: str):
    import boto3

    return boto3.client(
        service,
        endpoint_url=os.environ["AWS_ENDPOINT_URL"],
        region_name=os.environ["AWS_REGION"],
        aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"],
    )


def secret() -> None:
    value = json.dumps(
        {
            "DATABASE_URL": in_container(os.environ["DATABASE_URL"]),
            "REDIS_URL": in_container(os.environ["REDIS_URL"]),
            "VAULT_SECRET_ID": os.environ["VAULT_SECRET_ID"],
            "OIDC_CLIENT_SECRET": os.environ["OIDC_CLIENT_SECRET"],
        }
    )
    sm = aws("secretsmanager")
    try:
        arn = sm.describe_secret(SecretId=SECRET_NAME)["ARN"]
        sm.put_secret_value(SecretId=SECRET_NAME, SecretString=value)
    except sm.exceptions.ResourceNotFoundException:
        arn = sm.create_secret(Name=SECRET_NAME, SecretString=value)["ARN"]
    print(arn)


def overrides(arn: str) -> None:
    issuer = os.environ["OIDC_ISSUER_URL"]
    params = {
        "Architecture": "x86_64",
        "SecretsArn": arn,
        "VaultAddr": in_container(os.environ["VAULT_ADDR"]),
        "VaultRoleId": os.environ["VAULT_ROLE_ID"],
        "OidcIssuerUrl": issuer,
        # Tokens name the issuer as the host sees it; the function reaches it through 10.0.2.2.
        "OidcEndpointUrl": in_container(issuer),
        "OidcAudience": os.environ["OIDC_AUDIENCE"],
        "OidcClientId": os.environ["OIDC_CLIENT_ID"],
        "AuthMode": os.environ["AUTH_MODE"],
        "AwsEndpointUrl": in_container(os.environ["AWS_ENDPOINT_URL"]),
    }
    print(" ".join(f"{k}={v}" for k, v in params.items()))


def env_vars(path: str) -> None:
    # The bucket and the queue are `!Ref`s of resources, which sam local cannot create: the
    # local stack's own stand in for them.
    variables = {
        "ARTEFACT_BUCKET": os.environ["ARTEFACT_BUCKET"],
        "LOG_BUCKET": os.environ["LOG_BUCKET"],
        # Conditional on PublicLog (off here): the tiles are read through the API.
        "LOG_PUBLIC_URL": "",
        "RUNS_QUEUE_URL": in_container(os.environ["RUNS_QUEUE_URL"]),
        "WEBHOOK_QUEUE_URL": in_container(os.environ["WEBHOOK_QUEUE_URL"]),
        "BATCH_QUEUE_URL": in_container(os.environ["BATCH_QUEUE_URL"]),
        # Declared conditionally (absent on AWS): sam local leaves it empty whatever the
        # condition, so it is set here too.
        "AWS_ENDPOINT_URL": in_container(os.environ["AWS_ENDPOINT_URL"]),
        # Likewise, and there is no proxy here: empty is unset (DATABASE_URL's own host).
        "DATABASE_HOST": "",
    }
    with open(path, "w") as f:
        json.dump({"Parameters": variables}, f, indent=2)


def token(client: str) -> str:
    data = urllib.parse.urlencode({"grant_type": "client_credentials"}).encode()
    request = urllib.request.Request(
        os.environ["OIDC_ISSUER_URL"] + "/protocol/openid-connect/token", data=data
    )
    basic = base64.b64encode(f"{client}:{client}-secret".encode()).decode()
    request.add_header("Authorization", f"Basic {basic}")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)["access_token"]


def event(src: str, out: str, client: str = "merchant-a") -> None:
    text = open(src).read()
    if "REPLACE_WITH_A_TOKEN" in text:
        text = text.replace("REPLACE_WITH_A_TOKEN", token(client))
    with open(out, "w") as f:
        f.write(text)


SAMPLE_RUN = "5f0c8a9e-1d2b-4c3a-9e8f-7a6b5c4d3e2f"
SAMPLE_CONFIGURATION = "9b2f6a0e-3c1d-4e5f-8a7b-6c5d4e3f2a1b"
SAMPLE_SOURCE = "0d9c8b7a-6f5e-4d3c-8b2a-1f0e9d8c7b6a"
MERCHANT_A = "11111111-1111-4111-8111-111111111111"


def sam_invoke(function: str, event_doc: dict) -> tuple[dict, float]:
    """`sam local invoke` FUNCTION on EVENT_DOC: the function's answer and the wall time."""
    path = os.path.join(os.environ["SAM_LOCAL"], f"event-{function}.json")
    with open(path, "w") as f:
        json.dump(event_doc, f)
    args = json.loads(os.environ["SAM_ARGS_JSON"])
    # Without the local stack's settings: the template and its parameters decide (see sam_cli).
    env = {k: v for k, v in os.environ.items() if k not in os.environ["SAM_UNSET"].split()}
    env["PATH"] = os.path.join(os.environ["STATE"], "tools", "bin") + os.pathsep + env["PATH"]
    started = time.monotonic()
    done = subprocess.run(
        ["sam", "local", "invoke", function, "--event", path, *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=os.environ["ROOT"],
    )
    elapsed = time.monotonic() - started
    # The function's own output (sam passes it to stderr): a clean answer prints no error, also
    # not when the emulator stops and cuts the function's poll for its next invocation.
    printed = [line for line in done.stderr.splitlines() if line.startswith("Error: ")]
    if printed:
        sys.stderr.write(done.stderr[-4000:])
        sys.exit(f"{function} printed an error: {printed[0]}")
    for line in reversed(done.stdout.splitlines()):
        try:
            return json.loads(line), elapsed
        except ValueError:
            continue
    sys.stderr.write(done.stderr[-4000:])
    sys.exit(f"{function}: no answer from sam local invoke (exit {done.returncode})")


def load_event(name: str, client: str | None, replace: dict[str, str] | None = None) -> dict:
    text = open(os.path.join(os.environ["ROOT"], "events", name)).read()
    for old, new in (replace or {}).items():
        text = text.replace(old, new)
    if client:
        text = text.replace("REPLACE_WITH_A_TOKEN", token(client))
    return json.loads(text)


def http_answer(function: str, name: str, answer: dict, elapsed: float, want: int) -> dict:
    status = answer.get("statusCode")
    body = answer.get("body") or ""
    if answer.get("isBase64Encoded"):
        body = base64.b64decode(body).decode()
    print(f"{function:<26} {name:<24} {status}  {elapsed:5.1f} s  {body[:100]}")
    if status != want:
        sys.exit(f"{name}: expected {want}, got {status}: {body[:2000]}")
    return json.loads(body) if body else {}


def route_event(base: dict, method: str, path: str, route: str, body: dict | None) -> dict:
    """EVENT for another route of the same function, as API Gateway would send it."""
    event = json.loads(json.dumps(base))
    event["routeKey"] = f"{method} {route}"
    event["rawPath"] = path
    event["requestContext"]["http"]["method"] = method
    event["requestContext"]["http"]["path"] = path
    event["requestContext"]["routeKey"] = f"{method} {route}"
    event["body"] = json.dumps(body) if body is not None else None
    return event


def take_run_message(run_id: str) -> dict:
    """The run's message, taken off the run queue (the event source mapping's receive)."""
    sqs = aws("sqs")
    url = os.environ["RUNS_QUEUE_URL"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for m in sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=2, AttributeNames=["All"]
        ).get("Messages", []):
            if run_id in m["Body"]:
                return m
            # Another run's message: back on the queue at once.
            sqs.change_message_visibility(
                QueueUrl=url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0
            )
    sys.exit(f"the message of run {run_id} did not reach the run queue within 30 s")


def worker_on(run_id: str, elapsed_note: str) -> None:
    """The worker, through `sam local invoke`, on the real message of RUN_ID."""
    m = take_run_message(run_id)
    event = load_event("bundle-worker.json", None)
    record = event["Records"][0]
    record.update(
        messageId=m["MessageId"],
        receiptHandle=m["ReceiptHandle"],
        body=m["Body"],
        attributes=m.get("Attributes", record["attributes"]),
        md5OfBody=m["MD5OfBody"],
        awsRegion=os.environ["AWS_REGION"],
    )
    answer, elapsed = sam_invoke("BundleWorkerFunction", event)
    print(f"{'BundleWorkerFunction':<26} {elapsed_note:<24} {json.dumps(answer)[:60]}  {elapsed:5.1f} s")
    if answer.get("batchItemFailures"):
        sys.exit(f"the worker reported the message as failed: {answer}")
    # Processed: what the event source mapping does next.
    aws("sqs").delete_message(QueueUrl=os.environ["RUNS_QUEUE_URL"], ReceiptHandle=m["ReceiptHandle"])


def events() -> None:
    unique = str(int(time.time() * 1000))
    # merchants.json: a merchant created by the platform admin.
    e = load_event("merchants.json", "platform-admin", {"Acme GmbH": f"Acme {unique}"})
    http_answer("MerchantsFunction", "merchants.json", *sam_invoke("MerchantsFunction", e), 201)
    # configurations.json: merchant A's configuration (it listens to statement.period_closed).
    e = load_event("configurations.json", "merchant-a", {"Monthly statement": f"Statement {unique}"})
    config = http_answer(
        "ConfigurationsFunction", "configurations.json", *sam_invoke("ConfigurationsFunction", e), 201
    )
    # launch-bundle.json: a run of it.
    e = load_event("launch-bundle.json", "merchant-a", {SAMPLE_CONFIGURATION: config["id"]})
    # The sample's key, reused with another configuration, would rightly be refused (422).
    for name in list(e["headers"]):
        if name.lower() == "idempotency-key":
            e["headers"][name] = f"events-{unique}"
    run = http_answer(
        "LaunchBundleFunction", "launch-bundle.json", *sam_invoke("LaunchBundleFunction", e), 202
    )
    # bundle-worker.json: the batch, carrying that run's real message.
    worker_on(run["id"], "bundle-worker.json")
    # get-run.json and list-runs.json: the completed run.
    e = load_event("get-run.json", "merchant-a", {SAMPLE_RUN: run["id"]})
    got = http_answer("ReadApiFunction", "get-run.json", *sam_invoke("ReadApiFunction", e), 200)
    if got.get("status") != "completed":
        sys.exit(f"run {run['id']} is {got.get('status')}, not completed: {got}")
    e = load_event("list-runs.json", "merchant-a")
    listed = http_answer("ReadApiFunction", "list-runs.json", *sam_invoke("ReadApiFunction", e), 200)
    if run["id"] not in json.dumps(listed):
        sys.exit(f"run {run['id']} is not in the list")
    # inbound-webhooks.json: signed with a new source's secret, it launches a run.
    merchants = load_event("merchants.json", "platform-admin")
    path = f"/api/v1/merchants/{MERCHANT_A}/webhook-sources"
    source_event = route_event(
        merchants, "POST", path, "/api/v1/merchants/{merchantId}/webhook-sources", {"name": unique}
    )
    source_event["pathParameters"] = {"merchantId": MERCHANT_A}
    source = http_answer(
        "MerchantsFunction", "(a webhook source)", *sam_invoke("MerchantsFunction", source_event), 201
    )
    e = load_event("inbound-webhooks.json", None, {SAMPLE_SOURCE: source["id"]})
    stamp = str(int(time.time()))
    e["headers"]["webhook-id"] = f"msg_{unique}"
    e["headers"]["webhook-timestamp"] = stamp
    key = base64.b64decode(source["secret"].removeprefix("whsec_"))
    signed = f"msg_{unique}.{stamp}.".encode() + e["body"].encode()
    mac = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    e["headers"]["webhook-signature"] = f"v1,{mac}"
    launched = http_answer(
        "InboundWebhooksFunction", "inbound-webhooks.json", *sam_invoke("InboundWebhooksFunction", e), 202
    )
    # scheduler.json: one pass of the periodic jobs (nothing left to publish: an empty sweep).
    answer, elapsed = sam_invoke("SchedulerFunction", load_event("scheduler.json", None))
    print(f"{'SchedulerFunction':<26} {'scheduler.json':<24} {json.dumps(answer)[:60]}  {elapsed:5.1f} s")
    if isinstance(answer, dict) and answer.get("errorType"):
        sys.exit(f"the relay failed: {answer}")
    print(f"every event answered; webhook launched {json.dumps(launched)[:120]}")


def api(base: str, method: str, path: str, tok: str, body: dict | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(base + path, method=method)
    request.add_header("Authorization", f"Bearer {tok}")
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        request.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(request, data=data, timeout=120) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def cycle(base: str) -> None:
    tok = token("merchant-a")
    unique = str(int(time.time() * 1000))
    config_body = json.loads(load_event("configurations.json", None)["body"])
    config_body["name"] = f"Cycle {unique}"

    def step(name, method, path, want, body=None):
        started = time.monotonic()
        status, answer = api(base, method, path, tok, body)
        elapsed = time.monotonic() - started
        print(f"{name:<34} {status}  {elapsed:5.2f} s")
        if status != want:
            sys.exit(f"{name}: expected {want}, got {status}: {answer}")
        return answer

    config = step("POST /api/v1/configurations", "POST", "/api/v1/configurations", 201, config_body)
    seed = json.loads(load_event("launch-bundle.json", None)["body"])["seed"]
    run = step(
        "POST /api/v1/bundles",
        "POST",
        "/api/v1/bundles",
        202,
        {"configurationId": config["id"], "seed": seed},
    )
    worker_on(run["id"], "(the run's message)")
    got = step("GET /api/v1/bundles/{id}", "GET", f"/api/v1/bundles/{run['id']}", 200)
    if got.get("status") != "completed":
        sys.exit(f"run {run['id']} is {got.get('status')}, not completed: {got}")
    documents = [a.get("name") for a in got.get("artefacts", got.get("documents", []))]
    print(f"run {run['id']} completed: {documents or json.dumps(got)[:300]}")


def check(local_api: str, sam_api: str) -> None:
    """A run completed by the local API, read through sam local invoke and start-api."""
    tok = token("merchant-a")
    config_body = json.loads(load_event("configurations.json", None)["body"])
    config_body["name"] = f"Check {int(time.time() * 1000)}"
    status, config = api(local_api, "POST", "/api/v1/configurations", tok, config_body)
    assert status == 201, (status, config)
    seed = json.loads(load_event("launch-bundle.json", None)["body"])["seed"]
    status, run = api(
        local_api, "POST", "/api/v1/bundles", tok, {"configurationId": config["id"], "seed": seed}
    )
    assert status == 202, (status, run)
    deadline = time.monotonic() + 60
    while True:
        status, got = api(local_api, "GET", f"/api/v1/bundles/{run['id']}", tok)
        if got.get("status") in ("completed", "failed") or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    if got.get("status") != "completed":
        sys.exit(f"run {run['id']} did not complete on the local API: {got}")
    e = load_event("get-run.json", "merchant-a", {SAMPLE_RUN: run["id"]})
    invoked = http_answer("ReadApiFunction", "get-run.json", *sam_invoke("ReadApiFunction", e), 200)
    if invoked.get("status") != "completed" or invoked.get("id") != run["id"]:
        sys.exit(f"sam local invoke answered another run: {invoked}")
    started = time.monotonic()
    status, served = api(sam_api, "GET", f"/api/v1/bundles/{run['id']}", tok)
    print(f"{'start-api':<26} {'GET /api/v1/bundles/{id}':<24} {status}  {time.monotonic() - started:5.1f} s")
    if status != 200 or served.get("status") != "completed":
        sys.exit(f"start-api answered {status}: {served}")
    status, refused = api(sam_api, "GET", f"/api/v1/bundles/{run['id']}", "not-a-token")
    if status != 401 or "error" not in refused:
        sys.exit(f"start-api accepted a bad token: {status} {refused}")
    print(f"run {run['id']}: completed, read through sam local invoke and start-api")


COMMANDS = {
    "secret": secret,
    "overrides": overrides,
    "env-vars": env_vars,
    "event": event,
    "events": events,
    "cycle": cycle,
    "check": check,
}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        sys.exit(__doc__)
    COMMANDS[sys.argv[1]](*sys.argv[2:])
