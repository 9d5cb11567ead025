"""Commands for a trained model: ``kubetune eval`` (score it on a held-out file, optionally against
its base), ``kubetune generate`` (one reply) and ``kubetune chat`` (an interactive terminal chat).

A model is a job name, a run directory or its ``output/``, a model folder or ``.gguf`` file, or
an adapter folder (``--adapter`` puts an adapter on the model given). Bad input (a file of another
format, a path that is not a model) fails in one line before any model is loaded.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, TextIO

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from kubetune.cli.console import console, err_console
from kubetune.cli.jobs import Backend, Home, Namespace, make_client
from kubetune.contracts.evaluation import METRICS, EvalComparison, EvalReport

ModelArg = Annotated[str, typer.Argument(help="Job name, run directory, model folder, .gguf file or adapter folder.")]
AdapterOpt = Annotated[Path | None, typer.Option("--adapter", help="A PEFT adapter folder to put on MODEL.")]
BaseOpt = Annotated[
    Path | None, typer.Option("--base", help="The base model of an adapter whose adapter_config.json names none here.")
]
MaxNewTokens = Annotated[int, typer.Option("--max-new-tokens", min=1, help="Tokens generated per reply at most.")]
Temperature = Annotated[float, typer.Option("--temperature", min=0.0, help="0: greedy; above 0: sampled.")]
TopP = Annotated[float, typer.Option("--top-p", min=0.0, max=1.0, help="Nucleus sampling share (with --temperature).")]
Seed = Annotated[int | None, typer.Option("--seed", help="Seed of the sampler (reproducible sampled replies).")]


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    )


def _scores_table(reports: list[EvalReport], comparison: EvalComparison | None) -> Table:
    table = Table("metric", *(report.model for report in reports), *(["delta"] if comparison else []))
    for name in METRICS:
        if not all(name in report.metrics for report in reports):
            continue
        row = [name, *(f"{report.metrics[name]:.2f}" for report in reports)]
        if comparison is not None:
            row.append(f"{comparison.delta[name]:+.2f}")
        table.add_row(*row)
    table.caption = f"{reports[0].rows} rows of {reports[0].file}"
    return table


def evaluate(
    model: ModelArg,
    file: Annotated[Path, typer.Argument(help="Held-out file (json, jsonl, csv, parquet) in a trainer format.")],
    adapter: AdapterOpt = None,
    base: BaseOpt = None,
    compare: Annotated[
        str | None, typer.Option("--compare", help="Also score this base model (path or job) and print both.")
    ] = None,
    data_format: Annotated[
        str | None, typer.Option("--format", help="The file's format (default: the job's, else from its columns).")
    ] = None,
    metric: Annotated[
        list[str] | None,
        typer.Option("--metric", help=f"A metric to report (repeat; default all of the format): {', '.join(METRICS)}."),
    ] = None,
    max_new_tokens: MaxNewTokens = 32,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Prompts generated together.")] = 8,
    max_samples: Annotated[
        int | None, typer.Option("--max-samples", min=1, help="Score the first N rows only.")
    ] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json-out", help="Write the report (every row too) as JSON.")
    ] = None,
    show: Annotated[int, typer.Option("--show", min=0, help="Print the first N rows' reference and answers.")] = 0,
    home: Home = None,
    backend: Backend = "local",
    namespace: Namespace = None,
) -> None:
    """Score MODEL on FILE by batched greedy generation with the prompts rendered as in training:
    exact match, first-word match, contains, ROUGE-L (classification: accuracy, macro F1)."""
    client = make_client(home, backend, namespace)
    settings = {"max_new_tokens": max_new_tokens, "batch_size": batch_size}
    for key, value in (("format", data_format), ("metrics", metric), ("max_samples", max_samples)):
        if value is not None:
            settings[key] = value
    with _progress() as bar:
        tasks: dict[str, int] = {}

        def follow(label: str, done: int, total: int) -> None:
            if label not in tasks:
                tasks[label] = bar.add_task(f"scoring {label}", total=total)
            bar.update(tasks[label], completed=done)

        if compare is not None:
            comparison = client.compare_models(model, compare, file, adapter=adapter, on_progress=follow, **settings)
            reports = [comparison.base, comparison.tuned]
            record = comparison.to_json()
        else:
            report = client.evaluate(
                model, file, adapter=adapter, base=base, on_progress=lambda d, t: follow(model, d, t), **settings
            )
            comparison, reports, record = None, [report], report.to_json()
    console.print(_scores_table(reports, comparison))
    for index in range(min(show, reports[-1].rows)):
        sample = reports[-1].samples[index]
        console.print(f"[bold]{sample.place}[/]", highlight=False)
        console.print(f"  reference: {sample.reference}", highlight=False, markup=False)
        for report in reports:
            console.print(f"  {report.model}: {report.samples[index].prediction}", highlight=False, markup=False)
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        console.print(f"report written to {json_out}", highlight=False)


def generate(
    model: ModelArg,
    prompt: Annotated[str, typer.Argument(help="The user message.")],
    adapter: AdapterOpt = None,
    base: BaseOpt = None,
    max_new_tokens: MaxNewTokens = 128,
    temperature: Temperature = 0.0,
    top_p: TopP = 1.0,
    seed: Seed = None,
    home: Home = None,
    backend: Backend = "local",
    namespace: Namespace = None,
) -> None:
    """Print MODEL's reply to PROMPT (rendered with its chat template): greedy, or sampled."""
    client = make_client(home, backend, namespace)
    reply = client.generate(
        model,
        prompt,
        adapter=adapter,
        base=base,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_p=top_p,
        seed=seed,
    )
    typer.echo(reply)


EXIT_COMMANDS = ("/exit", "/quit")


def chat_loop(
    model, tokenizer, max_new_tokens: int, sampling, system: str | None = None, out: TextIO = sys.stdout
) -> int:
    """Talk with a loaded model until ``/exit``, Ctrl-D or Ctrl-C; returns the number of replies.

    Each turn is added to the history and the whole conversation is rendered with the model's chat
    template; the reply is printed token by token as it is generated. ``/reset`` forgets the history.
    """
    from kubetune.trainer.evaluation.generation import chat_prompt_ids, stream_reply

    history: list[dict] = [{"role": "system", "content": system}] if system else []
    replies = 0
    while True:
        try:
            line = input("you> ")
        except (EOFError, KeyboardInterrupt):
            out.write("\n")
            break
        text = line.strip()
        if text in EXIT_COMMANDS:
            break
        if text == "/reset":
            history = history[:1] if system else []
            out.write("(history cleared)\n")
            continue
        if not text:
            continue
        history.append({"role": "user", "content": text})
        out.write("bot> ")
        out.flush()
        pieces = []
        for piece in stream_reply(model, tokenizer, chat_prompt_ids(tokenizer, history), max_new_tokens, sampling):
            pieces.append(piece)
            out.write(piece)
            out.flush()
        out.write("\n")
        history.append({"role": "assistant", "content": "".join(pieces).strip()})
        replies += 1
    return replies


def chat(
    model: ModelArg,
    adapter: AdapterOpt = None,
    base: BaseOpt = None,
    system: Annotated[str | None, typer.Option("--system", help="A system message to start the conversation.")] = None,
    max_new_tokens: MaxNewTokens = 256,
    temperature: Temperature = 0.0,
    top_p: TopP = 1.0,
    seed: Seed = None,
    home: Home = None,
    backend: Backend = "local",
    namespace: Namespace = None,
) -> None:
    """Chat with MODEL in the terminal: replies stream as they are generated, with the model's chat
    template and the whole conversation as context. /exit or Ctrl-D leaves, /reset forgets."""
    from kubetune.trainer.evaluation.generation import Sampling
    from kubetune.trainer.evaluation.models import load_target

    client = make_client(home, backend, namespace)
    target = client.resolve_model(model, adapter, base)
    err_console.print(f"loading {target.label} ...", highlight=False)
    loaded, tokenizer = load_target(target)
    sys.stdout.write(f"chatting with {target.label}; /exit or Ctrl-D to leave, /reset to forget\n")
    chat_loop(loaded, tokenizer, max_new_tokens, Sampling(temperature, top_p, seed), system)
