"""The dashboard's JSON API over a real local backend: token checks, no file outside a job's run and
log folders, secrets scrubbed from logs, the live stream, and Schemathesis fuzzing the OpenAPI spec."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from kubetune.backends.local import LocalBackend
from kubetune.client import CustomTrainer, Initializer, JobStatus, Name, TrainerClient
from kubetune.spec import DatasetInitializer, SecretRef
from kubetune.ui.app import TOKEN_HEADER, create_app
from kubetune.ui.follow import MetricsDelta
from kubetune.ui.server import dashboard_url, exposure_warning

TOKEN = "test-token-4f1c9a"
AUTH = {TOKEN_HEADER: TOKEN}
SECRET_ENV = "KUBETUNE_UI_TEST_TOKEN"
SECRET_VALUE = "hf_s3cr3t-value-6d2e"
OUTSIDE = "OUTSIDE-THE-JOB-FOLDERS"


def print_the_token() -> str:
    """A careless training function: it prints a credential it inherited from the environment."""
    import os

    print(f"using token {os.environ['KUBETUNE_UI_TEST_TOKEN']}", flush=True)
    print("step 1 done", flush=True)
    return "ok"


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A real local job, finished: its dataset initializer references a secret (env) that its worker prints.

    Files a traversal would aim at sit next to its run and log folders (``secret.log`` in the data
    directory, ``notes.log`` beside it).
    """
    mp = pytest.MonkeyPatch()
    mp.setenv(SECRET_ENV, SECRET_VALUE)
    root = tmp_path_factory.mktemp("ui-api")
    home = root / "home"
    data = root / "data"
    data.mkdir()
    (data / "train.jsonl").write_text(json.dumps({"instruction": "hi", "output": "hello"}) + "\n")
    client = TrainerClient(LocalBackend(home))
    dataset = DatasetInitializer(storage_uri=str(data), token=SecretRef(env=SECRET_ENV))
    name = client.train(
        initializer=Initializer(dataset=dataset),
        trainer=CustomTrainer(func=print_the_token),
        options=[Name("ui-api-finished-job")],
    )
    job = client.wait_for_job_status(name, timeout=240, polling_interval=0.3)
    (home / "secret.log").write_text(OUTSIDE)
    (root / "notes.log").write_text(OUTSIDE)
    yield client, job, root
    mp.undo()
    for listed in client.list_jobs():
        client.delete_job(listed.name)


@pytest.fixture(scope="module")
def api(finished):
    client, _, _ = finished
    return TestClient(create_app(client, TOKEN, poll_s=0.1))


def _api_routes(api: TestClient) -> list[tuple[str, str]]:
    spec = api.get("/api/openapi.json", headers=AUTH).json()
    return [
        (method.upper(), path.replace("{name}", "ui-api-finished-job"))
        for path, methods in spec["paths"].items()
        for method in methods
    ]


def test_every_api_route_refuses_a_missing_or_wrong_token(api):
    routes = _api_routes(api)
    assert {path for _, path in routes} >= {"/api/jobs", "/api/runtimes", "/api/jobs/ui-api-finished-job/cancel"}
    assert api.get("/api/openapi.json").status_code == 401
    for method, path in routes:
        for headers, query in (({}, ""), ({TOKEN_HEADER: "wrong"}, ""), ({}, "?token=wrong")):
            response = api.request(method, path + query, headers=headers)
            assert response.status_code == 401, (method, path, headers, query)
            assert "ui-api-finished-job" not in response.text


def test_reads_take_the_token_in_the_header_or_query_and_changes_only_in_the_header(api, finished):
    _, job, _ = finished
    assert api.get("/api/jobs", headers=AUTH).json()[0]["name"] == job.name
    assert api.get(f"/api/jobs?token={TOKEN}").status_code == 200
    # A page of another site can put the token in a URL, never in a header: changes refuse the query.
    refused = api.delete(f"/api/jobs/{job.name}?token={TOKEN}")
    assert refused.status_code == 401
    assert api.post(f"/api/jobs/{job.name}/cancel?token={TOKEN}").status_code == 401
    assert api.get(f"/api/jobs/{job.name}", headers=AUTH).json()["status"] == "Complete"
    # The page itself carries no data and loads without the token.
    page = api.get("/")
    assert page.status_code == 200 and "app.js" in page.text and job.name not in page.text


def test_job_detail_has_status_steps_events_outputs_and_the_resolved_config(api, finished):
    _, job, _ = finished
    detail = api.get(f"/api/jobs/{job.name}", headers=AUTH).json()
    assert detail["status"] == "Complete" and detail["reason"] == "Succeeded"
    assert [s["name"] for s in detail["steps"]] == ["dataset-initializer", "node-0"]
    assert {"Created", "Succeeded"} <= {e["reason"] for e in detail["events"]}
    assert detail["run_dir"] == str(job.run_dir) and detail["outputs"] == [str(job.run_dir)]
    assert detail["config"]["initializer"]["dataset"]["token"] == {"env": SECRET_ENV, "file": None, "kubernetes": None}
    assert SECRET_VALUE not in json.dumps(detail)
    assert api.get("/api/jobs/no-such-job", headers=AUTH).status_code == 404
    assert api.post(f"/api/jobs/{job.name}/cancel", headers=AUTH).status_code == 409  # it has ended


def test_logs_are_scrubbed_of_the_secrets_the_job_references(api, finished):
    client, job, _ = finished
    raw = list(client.get_job_logs(job.name))
    assert f"using token {SECRET_VALUE}" in raw  # what the worker really wrote
    shown = api.get(f"/api/jobs/{job.name}/logs", headers=AUTH).json()
    assert "using token ***" in shown["lines"] and "step 1 done" in shown["lines"]
    assert SECRET_VALUE not in json.dumps(shown)
    with api.stream("GET", f"/api/jobs/{job.name}/stream?token={TOKEN}") as stream:
        body = stream.read().decode()
    assert "using token ***" in body and SECRET_VALUE not in body


def test_the_stream_of_an_ended_job_sends_its_row_logs_and_end(api, finished):
    _, job, _ = finished
    with api.stream("GET", f"/api/jobs/{job.name}/stream?step=dataset-initializer", headers=AUTH) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        events = [block.split("\n") for block in stream.read().decode().strip().split("\n\n")]
    names = [lines[0].removeprefix("event: ") for lines in events]
    assert names == ["job", "reset", "log-reset", "end"]
    row = json.loads(events[0][1].removeprefix("data: "))
    assert row["name"] == job.name and row["status"] == "Complete"


TRAVERSALS = [
    ("GET", "/api/jobs/..%2F..%2Fsecret/logs"),
    ("GET", "/api/jobs/%2e%2e/logs?step=..%2F..%2Fsecret"),
    ("GET", "/api/jobs/ui-api-finished-job/logs?step=../../secret"),
    ("GET", "/api/jobs/ui-api-finished-job/logs?step=..%2F..%2F..%2Fnotes"),
    ("GET", "/api/jobs/ui-api-finished-job/logs?step=%2Fetc%2Fpasswd"),
    ("GET", "/api/jobs/ui-api-finished-job/stream?step=../../secret"),
    ("GET", "/api/jobs/ui-api-finished-job/metrics/../../secret"),
    ("GET", "/static/../../../../etc/passwd"),
    ("GET", "/static/..%2F..%2F..%2F..%2Fetc%2Fpasswd"),
    ("GET", "/static/%2e%2e/app.py"),
    ("DELETE", "/api/jobs/..%2Fui-api-finished-job"),
]


def test_no_request_reads_a_file_outside_the_job_run_and_log_folders(api, finished):
    """Every file opened under the test's folders while serving hostile paths is the job's own."""
    _, job, root = finished
    home = root / "home"
    allowed = [job.run_dir, home / "logs" / job.name, home / "jobs.db"]
    opened: list[Path] = []

    def audit(event: str, args: tuple) -> None:
        if event == "open" and isinstance(args[0], str | bytes | Path) and recording:
            opened.append(Path(str(args[0] if not isinstance(args[0], bytes) else args[0].decode())).resolve())

    recording = True
    sys.addaudithook(audit)  # hooks cannot be removed: `recording` switches this one off
    try:
        for method, path in TRAVERSALS:
            response = api.request(method, path, headers=AUTH)
            assert response.status_code in (401, 404, 405, 409, 422), (method, path, response.status_code)
            assert OUTSIDE not in response.text and "root:" not in response.text
        for suffix in ("", "/logs", "/metrics"):
            assert api.get(f"/api/jobs/{job.name}{suffix}", headers=AUTH).status_code == 200
        assert api.get("/api/jobs", headers=AUTH).status_code == 200
    finally:
        recording = False
    inside = [path for path in opened if path.is_relative_to(root.resolve())]
    assert inside, "the job's own files should have been read"
    strays = [p for p in inside if not any(p == a.resolve() or p.is_relative_to(a.resolve()) for a in allowed)]
    assert not strays, strays


def test_runtimes_list_the_catalog_with_a_memory_plan(api, finished):
    rows = api.get("/api/runtimes", headers=AUTH).json()
    by_name = {row["name"]: row for row in rows}
    assert len(rows) >= 10
    lora = next(row for row in rows if row["method"] == "lora" and row["gpus_per_node"] == 1)
    assert lora["family"] and lora["model_uri"].startswith("hf://")
    assert lora["plan"].startswith("plan per GPU (79 GiB, 1 process(es)") and "peak" in lora["plan"]
    assert set(by_name) == {runtime.name for runtime in finished[0].list_runtimes()}


def test_metrics_delta_appends_resets_after_a_resume_and_follows_a_newest_only_backend():
    delta = MetricsDelta()
    one, two, three = ({"step": step, "loss": 1.0 / step} for step in (1, 2, 3))
    assert delta.update([]) == ("reset", [])  # a (re)connected page starts its curves afresh
    assert delta.update([one, two]) == ("append", [one, two])
    assert delta.update([one, two]) is None
    assert delta.update([one, two, three]) == ("append", [three])
    resumed = {"step": 2, "loss": 0.4}  # a resume dropped step 3 and logged step 2 again
    assert delta.update([one, resumed]) == ("reset", [one, resumed])
    window = MetricsDelta()  # Kubernetes: only the newest record each time
    assert window.update([one]) == ("reset", [one])
    assert window.update([one]) is None
    assert window.update([three]) == ("append", [three])
    assert window.sent == [one, three]


def test_serving_beyond_loopback_warns_and_the_url_carries_the_token():
    assert exposure_warning("127.0.0.1") is None and exposure_warning("::1") is None
    assert exposure_warning("localhost") is None
    assert "0.0.0.0" in exposure_warning("0.0.0.0") and "token" in exposure_warning("192.168.1.5")
    assert dashboard_url("127.0.0.1", 8265, "abc") == "http://127.0.0.1:8265/?token=abc"
    assert dashboard_url("0.0.0.0", 9000, "abc") == "http://127.0.0.1:9000/?token=abc"


def test_schemathesis_finds_no_server_error_in_the_api(api, finished):
    """Requests generated from the OpenAPI spec for every operation (the endless streams aside): no 500,
    and every documented response matches its schema."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis.checks import not_a_server_error, response_schema_conformance

    schema = schemathesis.openapi.from_asgi("/api/openapi.json", api.app, headers=AUTH)
    operations = [result.ok() for result in schema.get_all_operations()]
    operations = [operation for operation in operations if "stream" not in operation.path]
    assert {operation.path for operation in operations} >= {"/api/jobs", "/api/jobs/{name}/logs", "/api/runtimes"}
    calls: list[int] = []
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def fuzz(case):
            response = case.call_and_validate(headers=AUTH, checks=[not_a_server_error, response_schema_conformance])
            calls.append(response.status_code)

        fuzz()
    assert len(calls) >= 2 * len(operations)
    assert client_still_has_the_job(finished)


def client_still_has_the_job(finished) -> bool:
    """The fuzzer's random names never matched the module's job (so later tests still see it)."""
    client, job, _ = finished
    return client.get_job(job.name).status == JobStatus.COMPLETE
