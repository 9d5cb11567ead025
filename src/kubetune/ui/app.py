"""The dashboard's web app: a JSON API over :class:`~kubetune.client.TrainerClient`, live streams
(server-sent events) and the page that uses both.

Every ``/api`` route needs the token the server printed: in the ``X-Kubetune-Token`` header, or as
``?token=`` on reads (a browser's EventSource cannot send headers). Requests that change a job
(cancel, suspend, resume, delete) accept the header only, which a page of another site cannot set.
No route takes a path: jobs and steps are named by validated names and their files are read by
the backend (the job's run directory and logs only).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from importlib.resources import files
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request, Security
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.security import APIKeyHeader, APIKeyQuery
from fastapi.staticfiles import StaticFiles

from kubetune.client import TrainerClient
from kubetune.contracts.version import __version__
from kubetune.errors import ConfigError, JobExistsError, JobNotFoundError, KubetuneError
from kubetune.spec.job import JobSpec
from kubetune.ui.follow import LOG_TAIL_LINES, JobFollower, scrubbed_log, sse
from kubetune.ui.schemas import (
    JOB_NAME_PATTERN,
    STEP_PATTERN,
    ActionResult,
    ErrorBody,
    JobDetail,
    JobRow,
    LogLines,
    MetricPoint,
    RuntimeRow,
)

TOKEN_HEADER = "X-Kubetune-Token"
TOKEN_QUERY = "token"
STATIC = files("kubetune.ui") / "static"
HEADER_KEY = APIKeyHeader(name=TOKEN_HEADER, auto_error=False, description="The token `kubetune ui` printed.")
QUERY_KEY = APIKeyQuery(name=TOKEN_QUERY, auto_error=False, description="The token, for reads only.")

JobName = Annotated[str, Path(pattern=JOB_NAME_PATTERN, max_length=63, description="Job name.")]
StepName = Annotated[
    str, Query(pattern=STEP_PATTERN, max_length=63, description="node-0, model-initializer... or supervisor.")
]
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "No token, or a wrong one."},
    404: {"model": ErrorBody, "description": "No such job."},
    409: {"model": ErrorBody, "description": "The job cannot do that now."},
}


def _status_of(err: KubetuneError) -> int:
    if isinstance(err, JobNotFoundError):
        return 404
    if isinstance(err, ConfigError | JobExistsError):
        return 409
    return 400


def create_app(client: TrainerClient, token: str, poll_s: float = 1.0, gpu_memory_gib: float = 79.0) -> FastAPI:
    """The dashboard app over ``client``; ``token`` guards the API, ``poll_s`` paces the live streams.

    Runtime plans are for GPUs of ``gpu_memory_gib`` (what ``kubetune validate`` plans for by default).
    """
    app = FastAPI(
        title="kubetune dashboard",
        version=__version__,
        description="Jobs, live progress, logs and runtimes of a kubetune backend.",
        docs_url=None,  # the interactive docs load scripts from a CDN; the page works offline
        redoc_url=None,
        openapi_url=None,  # served under /api, behind the token
    )

    def _matches(given: str | None) -> bool:
        return given is not None and secrets.compare_digest(given.encode(), token.encode())

    def read_access(
        header: Annotated[str | None, Security(HEADER_KEY)], query: Annotated[str | None, Security(QUERY_KEY)]
    ) -> None:
        if not (_matches(header) or _matches(query)):
            raise HTTPException(401, "a valid token is required (open the URL `kubetune ui` printed)")

    def write_access(header: Annotated[str | None, Security(HEADER_KEY)]) -> None:
        if not _matches(header):
            raise HTTPException(401, f"a request that changes a job needs the token in the {TOKEN_HEADER} header")

    @app.exception_handler(KubetuneError)
    async def _user_error(_request: Request, err: KubetuneError) -> JSONResponse:
        return JSONResponse({"detail": str(err)}, status_code=_status_of(err))

    reads = [Depends(read_access)]
    writes = [Depends(write_access)]
    plans: dict[str, str] = {}

    def plan_of(runtime_name: str) -> str:
        from kubetune.cli.plan import job_plan

        if runtime_name not in plans:
            try:
                plans[runtime_name] = job_plan(JobSpec(runtime=runtime_name), gpu_memory_gib)
            except KubetuneError as err:
                plans[runtime_name] = f"plan: does not fit ({err})"
        return plans[runtime_name]

    @app.get("/api/openapi.json", dependencies=reads, include_in_schema=False)
    def openapi() -> dict[str, Any]:
        return app.openapi()

    @app.get("/api/jobs", dependencies=reads, responses=ERRORS, tags=["jobs"])
    def list_jobs() -> list[JobRow]:
        """Every job, oldest first, with the progress of its last logged step."""
        return [JobRow.of(job) for job in client.list_jobs()]

    @app.get("/api/jobs/{name}", dependencies=reads, responses=ERRORS, tags=["jobs"])
    def get_job(name: JobName) -> JobDetail:
        """One job: status, steps, events, outputs and its resolved config."""
        job = client.get_job(name)
        return JobDetail.of(job, client.get_job_events(name), client.get_job_outputs(name), client.get_job_config(name))

    @app.get("/api/jobs/{name}/metrics", dependencies=reads, responses=ERRORS, tags=["jobs"])
    def get_metrics(name: JobName) -> list[MetricPoint]:
        """The job's progress records so far (the local backend keeps every step; Kubernetes the newest)."""
        return [MetricPoint.of(record) for record in client.get_job_metrics(name)]

    @app.get("/api/jobs/{name}/logs", dependencies=reads, responses=ERRORS, tags=["jobs"])
    def get_logs(name: JobName, step: StepName = "node-0") -> LogLines:
        """The newest lines of one step's log, secrets scrubbed."""
        return LogLines(step=step, lines=scrubbed_log(client, name, step)[-LOG_TAIL_LINES:])

    @app.get(
        "/api/jobs/{name}/stream",
        dependencies=reads,
        responses={**ERRORS, 200: {"content": {"text/event-stream": {}}, "description": "Server-sent events."}},
        response_class=StreamingResponse,
        tags=["streams"],
    )
    async def stream_job(request: Request, name: JobName, step: StepName = "node-0") -> StreamingResponse:
        """Live events of one job until it ends: ``job`` (its row, when it changes), ``append``/``reset``
        (progress records), ``log``/``log-reset`` (new lines of ``step``), ``end``, ``gone`` (deleted)."""
        await run_in_threadpool(client.get_job, name)  # an unknown job is a 404, not an empty stream
        follower = JobFollower(client, name, step)

        async def events() -> AsyncIterator[str]:
            while True:
                try:
                    messages, ended = await run_in_threadpool(follower.poll)
                except JobNotFoundError:
                    yield sse("gone", {"name": name})
                    return
                for message in messages:
                    yield message
                if ended:
                    yield sse("end", {"name": name})
                    return
                if await _wait_or_leave(request, poll_s):
                    return

        return _event_stream(events())

    @app.get(
        "/api/stream/jobs",
        dependencies=reads,
        responses={**ERRORS, 200: {"content": {"text/event-stream": {}}, "description": "Server-sent events."}},
        response_class=StreamingResponse,
        tags=["streams"],
    )
    async def stream_jobs(request: Request) -> StreamingResponse:
        """The jobs table, live: a ``jobs`` event with every row whenever one changes."""

        def job_rows() -> list[dict[str, Any]]:
            return [JobRow.of(job).model_dump(mode="json") for job in client.list_jobs()]

        async def events() -> AsyncIterator[str]:
            sent = None
            while True:
                rows = await run_in_threadpool(job_rows)
                if rows != sent:
                    sent = rows
                    yield sse("jobs", rows)
                if await _wait_or_leave(request, poll_s):
                    return

        return _event_stream(events())

    @app.post("/api/jobs/{name}/cancel", dependencies=writes, responses=ERRORS, tags=["actions"])
    def cancel_job(name: JobName) -> ActionResult:
        """Stop an active job without a checkpoint; it ends Cancelled (record, logs and outputs stay)."""
        client.cancel_job(name)
        return ActionResult(name=name, status=client.get_job(name).status.value)

    @app.post("/api/jobs/{name}/suspend", dependencies=writes, responses=ERRORS, tags=["actions"])
    def suspend_job(name: JobName) -> ActionResult:
        """Ask a running job to checkpoint and stop (resumable)."""
        job = client.suspend_job(name, wait=False)
        return ActionResult(name=name, status=job.status.value)

    @app.post("/api/jobs/{name}/resume", dependencies=writes, responses=ERRORS, tags=["actions"])
    def resume_job(name: JobName) -> ActionResult:
        """Start a Suspended job again from its newest checkpoint."""
        return ActionResult(name=name, status=client.resume_job(name).status.value)

    @app.delete("/api/jobs/{name}", dependencies=writes, responses=ERRORS, tags=["actions"])
    def delete_job(name: JobName, purge: bool = False) -> ActionResult:
        """Stop the job and remove its record and logs; its outputs stay unless ``purge``."""
        client.delete_job(name, purge=purge)
        return ActionResult(name=name, status="Deleted")

    @app.get("/api/runtimes", dependencies=reads, responses=ERRORS, tags=["runtimes"])
    def list_runtimes() -> list[RuntimeRow]:
        """The backend's runtimes: model family, method, GPUs per node and the memory plan per GPU."""
        return [RuntimeRow.of(runtime, plan_of(runtime.name)) for runtime in client.list_runtimes()]

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(str(STATIC / "index.html"), headers={"Cache-Control": "no-store"})

    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    return app


async def _wait_or_leave(request: Request, seconds: float) -> bool:
    """Sleep ``seconds``; True when the browser has gone meanwhile."""
    await asyncio.sleep(seconds)
    return await request.is_disconnected()


def _event_stream(events: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(
        events, media_type="text/event-stream", headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    )
