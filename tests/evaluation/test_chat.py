"""``kubetune chat`` in a real pseudo-terminal, ``generate``, and streamed replies, on SmolLM2-135M-Instruct."""

from __future__ import annotations

import builtins
import io
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kubetune.cli.after_training import chat_loop
from kubetune.client import TrainerClient
from kubetune.trainer.evaluation.generation import Sampling, chat_prompt_ids, stream_reply
from kubetune.trainer.evaluation.models import load_target, resolve_model

MAX_NEW_TOKENS = 8
GREEDY = Sampling()


@pytest.fixture(scope="module")
def loaded(smollm2_dir: Path):
    return load_target(resolve_model(smollm2_dir))


def _reply(loaded, history: list[dict], sampling: Sampling = GREEDY) -> list[str]:
    model, tokenizer = loaded
    return list(stream_reply(model, tokenizer, chat_prompt_ids(tokenizer, history), MAX_NEW_TOKENS, sampling))


def _read_until(fd: int, marker: bytes, timeout: float = 300) -> bytes:
    data = b""
    deadline = time.monotonic() + timeout
    while marker not in data:
        left = deadline - time.monotonic()
        assert left > 0, f"no {marker!r} in {data!r}"
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # the other side closed
                break
            if not chunk:
                break
            data += chunk
    return data


def _bot_line(screen: bytes) -> str:
    """The reply the chat printed after ``bot> `` (the pty turns newlines into CR LF)."""
    return screen.split(b"bot> ", 1)[1].split(b"\r\n", 1)[0].decode().strip()


def test_chat_in_a_pseudo_terminal_keeps_the_history_and_ends_on_ctrl_d(smollm2_dir: Path, loaded, tmp_path: Path):
    primary, secondary = pty.openpty()
    env = {**os.environ, "KUBETUNE_HOME": str(tmp_path / "home")}
    command = [sys.executable, "-m", "kubetune.cli", "chat", str(smollm2_dir), "--max-new-tokens", str(MAX_NEW_TOKENS)]
    process = subprocess.Popen(command, stdin=secondary, stdout=secondary, stderr=secondary, env=env, close_fds=True)
    os.close(secondary)
    try:
        assert b"chatting with" in _read_until(primary, b"you> ")
        os.write(primary, b"What is 2+2?\n")
        first = _bot_line(_read_until(primary, b"\r\nyou> "))
        os.write(primary, b"And what is 3+3?\n")
        second = _bot_line(_read_until(primary, b"\r\nyou> "))
        os.write(primary, b"\x04")  # Ctrl-D on an empty line: end of input
        assert process.wait(timeout=120) == 0
    finally:
        if process.poll() is None:
            process.kill()
        os.close(primary)
    # Greedy replies: the chat's are the model's replies to the whole conversation so far.
    question = {"role": "user", "content": "What is 2+2?"}
    assert first == "".join(_reply(loaded, [question])).strip() and first
    history = [question, {"role": "assistant", "content": first}, {"role": "user", "content": "And what is 3+3?"}]
    assert second == "".join(_reply(loaded, history)).strip() and second


def test_chat_loop_leaves_on_exit_and_forgets_on_reset(monkeypatch):
    typed = iter(["", "/reset", "/exit", "never read"])
    monkeypatch.setattr(builtins, "input", lambda prompt="": next(typed))
    out = io.StringIO()
    assert chat_loop(None, None, MAX_NEW_TOKENS, Sampling(), out=out) == 0  # no turn reached the model
    assert out.getvalue() == "(history cleared)\n" and next(typed) == "never read"


def test_replies_stream_in_pieces_and_a_seed_makes_sampling_reproducible(loaded):
    question = [{"role": "user", "content": "Name a colour."}]
    assert len(_reply(loaded, question)) > 1
    sampled = Sampling(temperature=1.0, top_p=0.95, seed=7)
    assert _reply(loaded, question, sampled) == _reply(loaded, question, sampled)


def test_generate_answers_one_prompt_with_the_chat_template(smollm2_dir: Path, loaded, tmp_path: Path):
    reply = TrainerClient(home=tmp_path / "home").generate(smollm2_dir, "What is 2+2?", max_new_tokens=MAX_NEW_TOKENS)
    assert reply and reply == "".join(_reply(loaded, [{"role": "user", "content": "What is 2+2?"}])).strip()
