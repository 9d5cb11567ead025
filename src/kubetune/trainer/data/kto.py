"""KTO rows: a prompt and one completion labelled desirable (``true``) or undesirable (``false``).

Each row becomes a :class:`KtoExample`: prompt + completion (targets on the completion tokens
only, unless ``train_on_inputs``) and, for KTO's KL reference point, the same prompt with a
*mismatched* completion, another row's, paired as TRL's ``KTOTrainer`` pairs them: within each
block of ``batch_size`` consecutive rows (dataset order), row ``i`` takes the completion of row
``i - 1`` and the block's first row that of its last one (:func:`pair_mismatched`). The trainer
makes the blocks one global micro-batch long (``batch_size`` x processes; TRL: the per-device
batch), so the pairs do not depend on how many processes share the micro-batch.
``prompt`` and ``completion`` are plain strings or chat messages, as for ``format: preference``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from kubetune.errors import DataError
from kubetune.trainer.data.formats import IGNORE_INDEX, Example
from kubetune.trainer.data.preference import PreferenceTokenizer, response_text


@dataclass
class KtoExample:
    """One tokenized KTO row.

    Attributes:
        completion: prompt + the row's completion.
        prompt_len: tokens of the prompt at the start of ``completion``.
        desirable: the row's ``label``.
        kl: prompt + another row's completion (set by :func:`pair_mismatched`).
        reference_logps: the reference model's summed log-probs of ``completion`` and ``kl``
            when computed before training (``precompute_reference``).
    """

    completion: Example
    prompt_len: int
    desirable: bool
    kl: Example | None = None
    reference_logps: tuple[float, float] | None = field(default=None)

    @property
    def input_ids(self) -> list[int]:
        """The tokens of both sequences the row puts through the model in one forward (the
        memory plan sizes batches by this length)."""
        return self.completion.input_ids + (self.kl or self.completion).input_ids

    @property
    def num_targets(self) -> int:
        """1 when the completion has target tokens, else 0 (the row is dropped): a row is one
        unit of the loss."""
        return int(self.completion.num_targets > 0)

    @property
    def completion_ids(self) -> list[int]:
        """The completion's tokens (after the prompt)."""
        return self.completion.input_ids[self.prompt_len :]


class KtoTokenizer(PreferenceTokenizer):
    """Tokenizes ``kto`` rows into :class:`KtoExample` objects.

    Raises (per row, naming file and row): :class:`DataError` for an empty completion or
    messages without a chat template (a non-boolean ``label`` is caught by the column check).
    """

    def __call__(self, row: dict, where: str) -> KtoExample:  # type: ignore[override]
        """Tokenize one (already column-mapped) KTO row; ``where`` names it in errors."""
        if response_text(row["completion"]) is None:
            raise DataError(f"{where}: 'completion' is an empty response")
        example, prompt_len = self._prompted(row["prompt"], row["completion"], where)
        return KtoExample(self._truncate(example), min(prompt_len, self.max_seq_len), bool(row["label"]))


def check_both_labels(examples: list[KtoExample], path: Path) -> None:
    """KTO learns from desirable and undesirable rows: the dataset must hold both.

    Raises:
        DataError: naming the file and the label no row has.
    """
    desirable = sum(example.desirable for example in examples)
    if desirable == 0 or desirable == len(examples):
        have, lacking = ("true", "false") if desirable else ("false", "true")
        raise DataError(
            f"{path}: every one of the {len(examples)} rows has label {have}; format 'kto' needs rows labelled "
            f"{lacking} too (desirable and undesirable completions)"
        )


def pair_mismatched(examples: list[KtoExample], block: int, max_seq_len: int) -> None:
    """Give each example its KL sequence: its prompt with the completion of the previous example
    of its block of ``block`` consecutive examples (the first takes the last one's), TRL's
    pairing. Targets are on the borrowed completion; the sequence is cut at ``max_seq_len``."""
    for start in range(0, len(examples), block):
        chunk = examples[start : start + block]
        for index, example in enumerate(chunk):
            donor = chunk[index - 1]  # index 0 takes the block's last completion
            prompt = example.completion.input_ids[: example.prompt_len]
            ids = (prompt + donor.completion_ids)[:max_seq_len]
            labels = ([IGNORE_INDEX] * len(prompt) + donor.completion_ids)[:max_seq_len]
            example.kl = Example(ids, labels)
