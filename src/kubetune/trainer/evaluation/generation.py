"""Generating with a loaded model: batched greedy answers (left padding), and one reply, streamed
token by token or sampled (``kubetune generate``, ``kubetune chat``)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Sampling:
    """How to pick tokens: greedy (``temperature`` 0, the default) or sampled with ``top_p``, seeded."""

    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None


def _stop_ids(model, tokenizer) -> list[int]:
    """The tokens that end an answer: the tokenizer's end-of-sequence token and the model's own (an
    end-of-turn token for chat models)."""
    ids = {tokenizer.eos_token_id}
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids.update(configured if isinstance(configured, list) else [configured])
    return sorted(i for i in ids if i is not None)


def _generation_config(model, tokenizer, max_new_tokens: int, sampling: Sampling):
    from transformers import GenerationConfig

    sampled = sampling.temperature > 0
    return GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=sampled,
        temperature=sampling.temperature if sampled else None,
        top_p=sampling.top_p if sampled else None,
        top_k=None,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=_stop_ids(model, tokenizer),
    )


def _device(model) -> torch.device:
    return next(model.parameters()).device


def generate_answers(
    model,
    tokenizer,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: int,
    batch_size: int,
    on_batch: Callable[[int], None] | None = None,
) -> list[str]:
    """Greedy answers to token prompts, ``batch_size`` at a time, left-padded.

    Prompts are batched by length (fewer pad tokens); answers come back in the prompts' order,
    decoded without special tokens and stripped. ``on_batch(rows)`` is called after each batch.
    """
    config = _generation_config(model, tokenizer, max_new_tokens, Sampling())
    device = _device(model)
    order = sorted(range(len(prompts)), key=lambda index: len(prompts[index]))
    answers: list[str] = [""] * len(prompts)
    for start in range(0, len(order), batch_size):
        chosen = order[start : start + batch_size]
        longest = max(len(prompts[index]) for index in chosen)
        ids = torch.full((len(chosen), longest), tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(chosen), longest), dtype=torch.long)
        for row, index in enumerate(chosen):
            prompt = list(prompts[index])
            ids[row, longest - len(prompt) :] = torch.tensor(prompt, dtype=torch.long)
            mask[row, longest - len(prompt) :] = 1
        with torch.no_grad():
            out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), generation_config=config)
        for row, index in enumerate(chosen):
            answers[index] = tokenizer.decode(out[row, longest:], skip_special_tokens=True).strip()
        if on_batch is not None:
            on_batch(len(chosen))
    return answers


def predict_classes(
    model, tokenizer, prompts: Sequence[Sequence[int]], batch_size: int, on_batch: Callable[[int], None] | None = None
) -> list[int]:
    """A sequence classifier's predicted class of each token sequence (right-padded batches)."""
    device = _device(model)
    predicted: list[int] = []
    for start in range(0, len(prompts), batch_size):
        chunk = [list(prompt) for prompt in prompts[start : start + batch_size]]
        longest = max(len(prompt) for prompt in chunk)
        ids = torch.full((len(chunk), longest), tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(chunk), longest), dtype=torch.long)
        for row, prompt in enumerate(chunk):
            ids[row, : len(prompt)] = torch.tensor(prompt, dtype=torch.long)
            mask[row, : len(prompt)] = 1
        with torch.no_grad():
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
        predicted.extend(int(index) for index in logits.argmax(dim=-1).tolist())
        if on_batch is not None:
            on_batch(len(chunk))
    return predicted


def chat_prompt_ids(tokenizer, messages: list[dict]) -> list[int]:
    """The prompt tokens of a conversation (the model's chat template, with its generation prompt), as
    training renders ``messages`` rows; a tokenizer without a chat template gets the last message as text."""
    if getattr(tokenizer, "chat_template", None):
        rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return list(tokenizer(rendered, add_special_tokens=False)["input_ids"])
    return list(tokenizer(messages[-1]["content"], add_special_tokens=True)["input_ids"])


def stream_reply(
    model, tokenizer, prompt_ids: Sequence[int], max_new_tokens: int, sampling: Sampling = Sampling()
) -> Iterator[str]:
    """Generate one reply to ``prompt_ids``, yielding its text piece by piece as tokens arrive.

    Generation runs in a background thread feeding transformers' ``TextIteratorStreamer``; the
    text joined is the whole reply (special tokens dropped).
    """
    from transformers import TextIteratorStreamer

    if sampling.seed is not None:
        torch.manual_seed(sampling.seed)
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    ids = torch.tensor([list(prompt_ids)], dtype=torch.long, device=_device(model))
    config = _generation_config(model, tokenizer, max_new_tokens, sampling)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            with torch.no_grad():
                model.generate(
                    input_ids=ids, attention_mask=torch.ones_like(ids), generation_config=config, streamer=streamer
                )
        except BaseException as err:  # re-raised in the caller's thread
            failure.append(err)
            streamer.end()

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    yield from streamer
    worker.join()
    if failure:
        raise failure[0]
