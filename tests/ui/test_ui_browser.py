"""End to end in a real headless Chromium: `kubetune ui` serving a real SmolLM2 job on the local backend.

The job page's loss curve gains points while the job trains (server-sent events, no reload), and a
second job is cancelled, then deleted, from its page (through the confirm dialogs); the comparison and
runtimes views render.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from kubetune.client import BuiltinTrainer, CustomTrainer, JobStatus, LLMConfig, Name, TrainerClient

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
MAX_STEPS = 40
LOSS_POINTS = "() => +(document.querySelector('#chart-loss polyline[data-series=loss]')?.dataset.points || 0)"
WAIT_MS = 600_000  # the job's model loading and steps, on a loaded 2-core machine


def wait_forever() -> None:
    """A job that runs until it is stopped (the one the test cancels)."""
    import time

    print("waiting to be cancelled", flush=True)
    time.sleep(3600)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def dashboard(isolated_kubetune_home: Path):
    """`kubetune ui` in its own process over this test's data directory: yields the URL it printed."""
    if not CHROMIUM.exists():
        pytest.skip(f"Debian's chromium is not at {CHROMIUM} (`make setup` installs it where apt is available)")
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "kubetune.cli", "ui", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        line = server.stdout.readline()
        match = re.search(r"(http://127\.0\.0\.1:\d+/\?token=[\w-]+)", line)
        assert match, line
        url = match.group(1)
        deadline = time.monotonic() + 120
        while True:  # the URL is printed before uvicorn binds
            try:
                urllib.request.urlopen(url, timeout=5).read()
                break
            except OSError:
                assert time.monotonic() < deadline and server.poll() is None, "kubetune ui did not start"
                time.sleep(0.2)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)
        client = TrainerClient("local")
        for job in client.list_jobs():
            client.delete_job(job.name)


def test_job_page_curve_grows_live_and_a_job_is_cancelled_from_its_page(dashboard, smollm2_dir, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    data = tmp_path / "data"
    data.mkdir()
    with (data / "train.jsonl").open("w") as handle:
        for i in range(32):
            handle.write(json.dumps({"instruction": f"Add {i} and {i + 1}.", "output": f"The sum is {2 * i + 1}."}))
            handle.write("\n")
    config = LLMConfig.model_validate(
        {
            "model": {"path": str(smollm2_dir)},
            "dataset": {"path": str(data)},
            "method": "lora",
            "lora": {"r": 4, "target_modules": ["q_proj", "v_proj"]},
            "training": {"max_steps": MAX_STEPS, "batch_size": 2, "max_seq_len": 48, "learning_rate": 2e-3},
            "output": {"save_merged": False},
        }
    )
    client = TrainerClient("local")
    training = client.train(trainer=BuiltinTrainer(config=config), options=[Name("ui-training")])
    victim = client.train(trainer=CustomTrainer(func=wait_forever), options=[Name("ui-cancel-me")])

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        dialogs: list[str] = []
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.accept()))
        page.goto(dashboard)

        # The jobs table lists both jobs, live; the job page opens from it.
        expect(page.locator(f'tr[data-job="{training}"]')).to_be_visible()
        expect(page.locator(f'tr[data-job="{victim}"]')).to_be_visible()
        page.click(f'a[href="#/job/{training}"]')
        page.evaluate("window.notReloaded = true")

        # Points arrive while the job trains: a first one, then more, before the last step.
        page.wait_for_function(f"({LOSS_POINTS})() >= 1", timeout=WAIT_MS)
        first = page.evaluate(f"({LOSS_POINTS})()")
        page.wait_for_function(f"({LOSS_POINTS})() > {first}", timeout=WAIT_MS)
        later = page.evaluate(f"({LOSS_POINTS})()")
        job = client.get_job(training)
        assert job.status == JobStatus.RUNNING and first < later < MAX_STEPS, (first, later, job.status)
        assert page.evaluate("window.notReloaded") is True
        records = client.get_job_metrics(training)
        assert len(records) >= later and all(record.loss is not None for record in records[:later])
        expect(page.locator("#logs")).to_contain_text("step 1/")
        expect(page.locator("#outputs")).to_contain_text(str(job.run_dir))
        expect(page.locator("#config")).to_contain_text(str(smollm2_dir))
        page.screenshot(path=str(tmp_path / "job-page.png"), full_page=True)

        # Cancel the other job from its page, through the confirm dialog.
        page.evaluate(f"location.hash = '#/job/{victim}'")
        expect(page.locator("h1 .badge")).to_have_text("Running", timeout=WAIT_MS)
        page.click("#cancel")
        expect(page.locator("h1 .badge")).to_have_text("Cancelled", timeout=120_000)
        assert dialogs and dialogs[-1].startswith(f"Cancel {victim}?")
        assert client.get_job(victim).status == JobStatus.CANCELLED
        assert client.get_job(training).status == JobStatus.RUNNING  # the other job is untouched

        # The comparison view overlays the loss curves; the runtimes view lists the catalog with plans.
        page.evaluate(f"location.hash = '#/compare/{training},{victim}'")
        compared = f"document.querySelector('#chart-compare polyline[data-series=\"{training}\"]')"
        page.wait_for_function(f"() => +({compared}?.dataset.points || 0) >= {later}", timeout=WAIT_MS)
        page.evaluate("location.hash = '#/runtimes'")
        rows = page.locator("#runtimes tr[data-runtime]")
        expect(rows.first).to_be_visible(timeout=120_000)
        assert rows.count() == len(client.list_runtimes())
        expect(page.locator("#runtimes")).to_contain_text("fits")

        # Delete the cancelled job from its page (the first confirm keeps its outputs).
        kept = client.get_job(victim).run_dir
        page.evaluate(f"location.hash = '#/job/{victim}'")
        expect(page.locator("h1 .badge")).to_have_text("Cancelled")
        page.click("#delete")
        expect(page.locator(f'tr[data-job="{training}"]')).to_be_visible()
        expect(page.locator(f'tr[data-job="{victim}"]')).to_have_count(0)
        assert dialogs[-1].startswith(f"Delete {victim}?")
        assert [job.name for job in client.list_jobs()] == [training]
        assert kept.is_dir()  # its outputs stay
        browser.close()
    assert (tmp_path / "job-page.png").stat().st_size > 10_000
