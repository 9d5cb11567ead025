"""Score a loaded model on an :class:`~kubetune.trainer.evaluation.prompts.EvalSet`, in one process or
with the rows split over the ranks of a job (each rank answers every ``world_size``-th row)."""

from __future__ import annotations

from collections.abc import Callable

from kubetune.contracts.evaluation import EvalReport, EvalSample
from kubetune.trainer.evaluation.generation import generate_answers, predict_classes
from kubetune.trainer.evaluation.metrics import classification_scores, generation_scores
from kubetune.trainer.evaluation.prompts import EvalSet


def score_model(
    model,
    tokenizer,
    eval_set: EvalSet,
    max_new_tokens: int,
    batch_size: int,
    label: str,
    step: int | None = None,
    on_rows: Callable[[int], None] | None = None,
    rank: int = 0,
    world_size: int = 1,
) -> EvalReport:
    """Answer every row (greedy generation, or the classifier's class) and score the answers.

    With ``world_size`` > 1 (an initialized process group), rank ``r`` answers rows ``r, r+world,
    ...``, the answers are gathered on every rank, and every rank returns the same report.
    ``on_rows(n)`` is called as this rank finishes ``n`` more rows.
    """
    mine = list(range(rank, len(eval_set.items), world_size))
    prompts = [eval_set.items[index].prompt_ids for index in mine]
    was_training = model.training
    model.eval()
    try:
        if eval_set.classifies:
            classes = predict_classes(model, tokenizer, prompts, batch_size, on_rows)
            answers: list = [eval_set.label_names[index] for index in classes]
        else:
            answers = generate_answers(model, tokenizer, prompts, max_new_tokens, batch_size, on_rows)
    finally:
        model.train(was_training)
    by_row = dict(zip(mine, answers, strict=True))
    if world_size > 1:
        import torch.distributed as dist

        gathered: list = [None] * world_size
        dist.all_gather_object(gathered, by_row)
        by_row = {index: answer for part in gathered for index, answer in part.items()}
    predictions = [by_row[index] for index in range(len(eval_set.items))]
    references = [item.reference for item in eval_set.items]
    if eval_set.classifies:
        index_of = {name: index for index, name in enumerate(eval_set.label_names or [])}
        metrics = classification_scores(
            [index_of[p] for p in predictions], [item.label for item in eval_set.items], eval_set.metrics
        )
    else:
        metrics = generation_scores(predictions, references, eval_set.metrics)
    samples = [
        EvalSample(item.place, tokenizer.decode(item.prompt_ids, skip_special_tokens=False), item.reference, answer)
        for item, answer in zip(eval_set.items, predictions, strict=True)
    ]
    rounded = {name: round(value, 4) for name, value in metrics.items()}
    return EvalReport(label, str(eval_set.file), len(eval_set.items), rounded, step, samples)
