"""One job's supervisor: ``python -m kubetune.backends.local.supervisor --home HOME --job NAME``.

Started detached (its own session and process group) by :class:`~kubetune.backends.local.LocalBackend`,
it outlives the caller. It runs the initializer steps one after the other, then one torchrun
agent per node with a c10d rendezvous on loopback, records every transition in the job store
and each step's output in ``<home>/logs/<job>/<step>.log``. When one node fails it stops the
others, so no worker waits forever in a collective; with ``max_restarts`` it then starts every
node again (a new rendezvous; the LLM Trainer resumes from its newest checkpoint), and after
that many restarts the job fails with the last error.

Stopping keeps the work: on SIGUSR1 (``kubetune suspend``) or SIGTERM (a machine shutting
down, ``kubetune delete``) it passes SIGTERM on to its children (the launchers forward it to the
workers, which checkpoint and exit with :data:`~kubetune.errors.PREEMPTED_EXIT_CODE`) and marks
the job Suspended, reason ``Suspended`` or ``Preempted``. A node that exits with that status on
its own (a worker was sent SIGTERM) also leaves the job Suspended (``Preempted``), never counted
against ``max_restarts``; ``kubetune resume`` continues it. On SIGINT it stops its children and
marks the job Cancelled.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import time
import traceback
from pathlib import Path

import psutil

from kubetune.backends.local.child_env import worker_env
from kubetune.backends.local.job_store import JobStore
from kubetune.contracts.run_dir import SOURCE_KINDS, LocalHome, RunDir
from kubetune.contracts.types import EXPORTER_STEP, JobStatus, StepStatus
from kubetune.errors import PREEMPTED_EXIT_CODE
from kubetune.spec.initializer import INITIALIZER_SPEC_ENV
from kubetune.spec.job import JobSpec, write_job_file

POLL_S = 0.5
STOP_GRACE_S = 10.0
# How long the workers of a suspended or preempted job may take to finish their step and checkpoint.
SUSPEND_GRACE_S = 300.0
# Stop requests: the signal -> the Suspended job's reason.
STOP_REASONS = {signal.SIGUSR1: "Suspended", signal.SIGTERM: "Preempted"}


class Terminated(Exception):
    """The supervisor was asked to cancel the job (SIGINT)."""


def _on_signal(signum: int, _frame) -> None:
    raise Terminated(signal.Signals(signum).name)


def initializer_command(kind: str, target: Path) -> list[str]:
    """``python -m kubetune.initializers KIND --target DIR``; the spec travels in the environment."""
    return [sys.executable, "-m", "kubetune.initializers", kind, "--target", str(target)]


def exporter_command(config: Path, run_dir: Path) -> list[str]:
    """``python -m kubetune.exporter``: push the results and register the model after training."""
    return [sys.executable, "-m", "kubetune.exporter", "--config", str(config), "--run-dir", str(run_dir)]


def free_port() -> int:
    """A TCP port free on loopback right now (for the rendezvous store)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def node_command(spec: JobSpec, job: str, node: int, port: int, config: Path, run_dir: Path) -> list[str]:
    """The torchrun agent of one node (kubetune's preemption-aware launcher); all agents meet at a
    c10d rendezvous hosted by node 0."""
    module = "kubetune.trainer" if spec.trainer_kind == "builtin" else "kubetune.backends.function_worker"
    return [
        sys.executable, "-m", "kubetune.trainer.launch",
        "--nnodes", str(spec.num_nodes),
        "--nproc-per-node", str(spec.procs_per_node),
        "--rdzv-backend", "c10d",
        "--rdzv-endpoint", f"127.0.0.1:{port}",
        "--rdzv-id", job,
        "--rdzv-conf", f"is_host={1 if node == 0 else 0}",
        "--local-addr", "127.0.0.1",
        "--max-restarts", "0",
        "-m", module, "--config", str(config), "--run-dir", str(run_dir),
    ]  # fmt: skip


# A worker's uncaught exception, as Python prints it (torchrun may prefix "[rank0]: ").
_EXCEPTION_LINE = re.compile(r"^(\[\w+\]:\s*)?[A-Za-z_][\w.]*(Error|Exception|Interrupt): ")


def failure_summary(log: Path) -> str:
    """The most telling line at the end of a failed step's log: an ``error:`` line, else a worker's
    exception (not torchrun's own summary), else the last line mentioning an error."""
    try:
        lines = [line.strip() for line in log.read_text(errors="replace").splitlines()[-200:] if line.strip()]
    except OSError:
        return "no log"
    for predicate in (
        lambda line: line.startswith("error:"),
        lambda line: _EXCEPTION_LINE.match(line) is not None and "ChildFailedError" not in line,
        lambda line: "Signal" in line and "received" in line,
        lambda line: "Error" in line or "error" in line,
    ):
        matches = [line for line in lines if predicate(line)]
        if matches:
            return matches[-1][:500]
    return lines[-1][:500] if lines else "no output"


class Supervisor:
    """Runs one job's steps and records what happens."""

    def __init__(self, home: Path, name: str):
        self.home = LocalHome(home)
        self.store = JobStore(self.home.jobs_db)
        self.name = name
        self.log_dir = self.home.log_dir(name)
        record = self.store.get(name)
        if record is None:
            raise SystemExit(f"no job {name!r} in {home}")
        self.spec = JobSpec.model_validate_json(record.spec_json)
        self.run_dir = record.job.run_dir
        self.layout = RunDir(self.run_dir)
        self.step_names = [step.name for step in record.job.steps]
        self.done_steps = {step.name for step in record.job.steps if step.status == StepStatus.SUCCEEDED}
        self.children: list[subprocess.Popen] = []
        self.stop_signal: str | None = None
        self.stop_deadline = 0.0

    def request_stop(self, signum: int, _frame) -> None:
        """Signal handler: remember the request and pass SIGTERM on to every child (their workers checkpoint)."""
        if self.stop_signal is None:
            self.stop_signal = signal.Signals(signum).name
            self.stop_deadline = time.monotonic() + SUSPEND_GRACE_S
        for proc in self.children:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)

    def _suspend(self, step: str | None, code: int | None) -> None:
        """Mark the job Suspended after a requested stop (``step`` None: before the nodes started) or a
        node's preemption exit."""
        resume = f"`kubetune resume {self.name}` continues from the newest checkpoint"
        if self.stop_signal is not None:
            reason = STOP_REASONS[signal.Signals[self.stop_signal]]
            ended = "before the nodes started" if step is None else f"{step} exited with code {code}"
            message = f"the supervisor received {self.stop_signal}; {ended}; {resume}"
        else:
            reason = "Preempted"
            message = f"{step} stopped after a preemption checkpoint (exit code {code}); {resume}"
        self.store.set_status(self.name, JobStatus.SUSPENDED, reason, message)

    def _start(self, step: str, command: list[str], env: dict[str, str]) -> subprocess.Popen:
        log = self.home.log_file(self.name, step).open("ab")
        try:
            proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env)
        finally:
            log.close()
        self.children.append(proc)
        self.store.set_step(self.name, step, StepStatus.RUNNING)
        return proc

    def run(self) -> None:
        """Initializers, then the nodes; ends with the job Complete or Failed."""
        env = worker_env(self.spec)
        config = write_job_file(self.spec, self.layout.config_file)  # the trainer reads it, and keeps it
        sources = self.spec.initializer
        initializers = (
            []
            if sources is None
            else [(kind, source) for kind in SOURCE_KINDS if (source := getattr(sources, kind)) is not None]
        )
        if initializers:
            self.store.set_status(self.name, JobStatus.INITIALIZING)
        for kind, source in initializers:
            step = f"{kind}-initializer"
            if step in self.done_steps:  # a resumed job keeps what its initializers fetched
                continue
            # The spec holds secret references only (never values), so it may travel as JSON.
            step_env = {**env, INITIALIZER_SPEC_ENV: source.model_dump_json()}
            proc = self._start(step, initializer_command(kind, self.layout.source(kind)), step_env)
            code = proc.wait()
            self.store.set_step(self.name, step, StepStatus.SUCCEEDED if code == 0 else StepStatus.FAILED, code)
            if code != 0 and self.stop_signal is not None:
                self._suspend(step, code)
                return
            if code != 0:
                summary = failure_summary(self.home.log_file(self.name, step))
                self.store.set_status(
                    self.name, JobStatus.FAILED, "InitializerFailed", f"{step} exited with code {code}: {summary}"
                )
                return
        self.store.set_status(self.name, JobStatus.RUNNING)
        restarts = 0
        if self.stop_signal is not None:
            self._suspend(None, None)
            return
        while (failure := self._run_nodes(config, env)) is not None:
            step, code, summary = failure
            if self.stop_signal is not None or code == PREEMPTED_EXIT_CODE:
                self._suspend(step, code)
                return
            if restarts >= self.spec.max_restarts:
                detail = f" (after {restarts} restart{'s' * (restarts != 1)})" if restarts else ""
                self.store.set_status(
                    self.name, JobStatus.FAILED, "TrainerFailed", f"{step} exited with code {code}{detail}: {summary}"
                )
                return
            restarts += 1
            self.store.add_event(
                self.name,
                "Warning",
                "Restarting",
                f"{step} exited with code {code}: {summary}; restarting the nodes "
                f"({restarts} of max_restarts {self.spec.max_restarts})",
            )
        if self.spec.trainer_kind == "builtin" and not self.layout.loss_curve.exists():
            self.store.add_event(
                self.name, "Warning", "NoLossCurve", f"the trainer wrote no {self.layout.loss_curve.name}"
            )
        if EXPORTER_STEP in self.step_names:
            proc = self._start(EXPORTER_STEP, exporter_command(config, self.run_dir), env)
            code = proc.wait()
            self.store.set_step(
                self.name, EXPORTER_STEP, StepStatus.SUCCEEDED if code == 0 else StepStatus.FAILED, code
            )
            if code != 0:
                summary = failure_summary(self.home.log_file(self.name, EXPORTER_STEP))
                self.store.set_status(
                    self.name, JobStatus.FAILED, "ExporterFailed", f"{EXPORTER_STEP} exited with code {code}: {summary}"
                )
                return
        self.store.set_status(self.name, JobStatus.COMPLETE, "Succeeded", f"outputs in {self.layout.output}")

    def _run_nodes(self, config: Path, env: dict[str, str]) -> tuple[str, int, str] | None:
        """Start every node (a fresh rendezvous) and wait for all of them.

        On the first failure, stop the other nodes and return ``(step, exit code, log summary)``;
        return None when every node succeeded. After a stop request or a preemption exit the other
        nodes get the suspend grace period to finish their checkpoint.
        """
        # Several nodes must be told the rendezvous port in advance. One node hosts its own store on port 0,
        # bound by torchrun itself: a port picked here is free only until torchrun starts, and any process
        # binding a port meanwhile (seconds on a busy machine) can take it.
        port = free_port() if self.spec.num_nodes > 1 else 0
        self.children = [proc for proc in self.children if proc.poll() is None]
        running = {
            f"node-{i}": self._start(
                f"node-{i}", node_command(self.spec, self.name, i, port, config, self.run_dir), env
            )
            for i in range(self.spec.num_nodes)
        }
        while running:
            time.sleep(POLL_S)
            if self.stop_signal is not None and time.monotonic() > self.stop_deadline:
                self.stop_children(grace_s=0.0)
            for step, proc in list(running.items()):
                code = proc.poll()
                if code is None:
                    continue
                del running[step]
                self.store.set_step(self.name, step, StepStatus.SUCCEEDED if code == 0 else StepStatus.FAILED, code)
                if code != 0:
                    summary = failure_summary(self.home.log_file(self.name, step))
                    stopping = self.stop_signal is not None or code == PREEMPTED_EXIT_CODE
                    self.stop_children(SUSPEND_GRACE_S if stopping else STOP_GRACE_S)
                    for other in running:
                        self.store.set_step(self.name, other, StepStatus.FAILED, running[other].returncode)
                    return step, code, summary
        return None

    def stop_children(self, grace_s: float = STOP_GRACE_S) -> None:
        """SIGTERM every live child, then SIGKILL what is left after ``grace_s``."""
        live = [proc for proc in self.children if proc.poll() is None]
        for proc in live:
            proc.terminate()
        deadline = time.monotonic() + grace_s
        for proc in live:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def main(argv: list[str] | None = None) -> int:
    """Supervise one job until it ends; a crash of the supervisor itself marks the job Failed."""
    parser = argparse.ArgumentParser(prog="python -m kubetune.backends.local.supervisor", description=__doc__)
    parser.add_argument("--home", required=True)
    parser.add_argument("--job", required=True)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, _on_signal)
    supervisor = Supervisor(Path(args.home), args.job)
    for signum in STOP_REASONS:
        signal.signal(signum, supervisor.request_stop)
    # Record ourselves too: the submitter may die between starting us and recording our pid.
    supervisor.store.set_supervisor(args.job, os.getpid(), psutil.Process().create_time())
    supervisor.log_dir.mkdir(parents=True, exist_ok=True)
    try:
        supervisor.run()
    except Terminated as stop:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        supervisor.stop_children()
        supervisor.store.set_status(args.job, JobStatus.CANCELLED, "Terminated", f"the supervisor received {stop}")
        return 1
    except Exception as err:
        traceback.print_exc()
        supervisor.stop_children()
        supervisor.store.set_status(args.job, JobStatus.FAILED, "SupervisorError", f"{type(err).__name__}: {err}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
