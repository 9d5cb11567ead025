"""Preference pairs: a prompt with a chosen and a rejected response, tokenized for one forward.

Each side of a pair is an :class:`~kubetune.trainer.data.formats.Example` (prompt + response,
targets on the response tokens only, unless ``train_on_inputs``). ``prompt``, ``chosen`` and
``rejected`` are plain strings, or lists of chat messages rendered with the tokenizer's chat
template (a string prompt beside message responses becomes one user message).
"""

from __future__ import annotations

from dataclasses import dataclass

from kubetune.errors import DataError
from kubetune.trainer.data.formats import IGNORE_INDEX, Example, Tokenizer, _normalise_messages


@dataclass
class PreferenceExample:
    """One tokenized preference pair.

    ``reference_logps`` holds the reference model's summed log-probs of the chosen and the
    rejected response when they were computed before training (``precompute_reference``).
    A pair is one unit of the loss: ``num_targets`` is 1 (0 when a side has no target left).
    """

    chosen: Example
    rejected: Example
    reference_logps: tuple[float, float] | None = None

    @property
    def input_ids(self) -> list[int]:
        """The tokens of both responses: what the pair puts through the model in one forward
        (the memory plan sizes batches by this length)."""
        return self.chosen.input_ids + self.rejected.input_ids

    @property
    def num_targets(self) -> int:
        """1 when both responses have target tokens, else 0 (the pair is dropped)."""
        return int(self.chosen.num_targets > 0 and self.rejected.num_targets > 0)


def response_text(value: object) -> str | None:
    """The text of a response given as a string or as messages (None when it is empty)."""
    if isinstance(value, str):
        return value if value.strip() else None
    if isinstance(value, list):
        text = "".join(str(turn.get("content", turn.get("value", ""))) for turn in value if isinstance(turn, dict))
        return text if text.strip() else None
    return None


class PreferenceTokenizer(Tokenizer):
    """Tokenizes ``preference`` rows into :class:`PreferenceExample` objects.

    Raises (per row, naming file and row): :class:`DataError` for an empty response, identical
    chosen and rejected responses, or messages without a chat template.
    """

    def _side(self, prompt: object, response: object, where: str) -> Example:
        return self._prompted(prompt, response, where)[0]

    def _prompted(self, prompt: object, response: object, where: str) -> tuple[Example, int]:
        """Prompt + response as one example (targets on the response), and the prompt's length in tokens."""
        if isinstance(prompt, str) and isinstance(response, str):
            return self._pair(prompt, response), len(self._prompt_ids(prompt))
        if not getattr(self.tok, "chat_template", None):
            raise DataError(f"{where}: chat messages need a tokenizer with a chat template")
        prompt_turns = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
        response_turns = [{"role": "assistant", "content": response}] if isinstance(response, str) else response
        messages = _normalise_messages(list(prompt_turns) + list(response_turns), where)
        prompt_len = len(self._chat_ids(messages[: len(prompt_turns)], add_generation_prompt=True))
        ids = self._chat_ids(messages, add_generation_prompt=False)
        labels = list(ids) if self.config.train_on_inputs else [IGNORE_INDEX] * prompt_len + ids[prompt_len:]
        return Example(ids, labels), prompt_len

    def prompt_and_reference(self, row: dict, where: str) -> tuple[list[int], str]:
        """The prompt tokens as training renders them (plain text, or the chat template with its
        generation prompt) and the ``chosen`` response as the reference answer."""
        chosen = response_text(row["chosen"])
        if chosen is None:
            raise DataError(f"{where}: 'chosen' is an empty response")
        prompt = row["prompt"]
        if isinstance(prompt, str) and isinstance(row["chosen"], str):
            return self._prompt_ids(prompt), chosen
        if not getattr(self.tok, "chat_template", None):
            raise DataError(f"{where}: chat messages need a tokenizer with a chat template")
        turns = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
        messages = _normalise_messages([*turns, {"role": "assistant", "content": chosen}], where)
        return self._chat_ids(messages[:-1], add_generation_prompt=True), chosen

    def _truncate(self, example: Example) -> Example:
        if len(example.input_ids) <= self.max_seq_len:
            return example
        self.truncated += 1
        return Example(example.input_ids[: self.max_seq_len], example.labels[: self.max_seq_len])

    def __call__(self, row: dict, where: str) -> PreferenceExample:  # type: ignore[override]
        """Tokenize one (already column-mapped) preference row; ``where`` names it in errors."""
        chosen, rejected = response_text(row["chosen"]), response_text(row["rejected"])
        for name, text in (("chosen", chosen), ("rejected", rejected)):
            if text is None:
                raise DataError(f"{where}: '{name}' is an empty response")
        if row["chosen"] == row["rejected"]:
            raise DataError(f"{where}: 'chosen' and 'rejected' are the same response; a pair must differ")
        return PreferenceExample(
            self._truncate(self._side(row["prompt"], row["chosen"], where)),
            self._truncate(self._side(row["prompt"], row["rejected"], where)),
        )
