"""Prompt rows (``format: prompt``): what online objectives (``grpo``) generate completions for.

A row's ``prompt`` is a plain string (tokenized as is, with the tokenizer's special tokens), or
a list of chat messages ending with a user turn (rendered with the tokenizer's chat template and
its generation prompt). The whole row stays with the example: the reward functions read its
other columns (an answer to match...). A prompt longer than ``training.max_seq_len`` keeps its
last ``max_seq_len`` tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

from kubetune.errors import DataError
from kubetune.trainer.data.formats import Tokenizer, _kind_of


@dataclass
class PromptExample:
    """One tokenized prompt, the row it came from and where that row is (``file:line``).

    A prompt is one unit of the data stream: ``num_targets`` is 1.
    """

    prompt_ids: list[int]
    row: dict
    where: str

    @property
    def input_ids(self) -> list[int]:
        """The prompt's tokens (what the data stream and the plan size it by)."""
        return self.prompt_ids

    @property
    def num_targets(self) -> int:
        """1: every prompt is used."""
        return 1


def _prompt_messages(value: list, where: str) -> list[dict]:
    """Check chat messages of a prompt: ``{role, content}`` objects, the last one from the user."""
    place = f"{where}: column 'prompt'"
    if not value:
        raise DataError(f"{place} is an empty list; a prompt needs at least one message")
    messages = []
    for position, turn in enumerate(value):
        if not isinstance(turn, dict):
            raise DataError(f"{place}: message {position} is {_kind_of(turn)}, not an object with role and content")
        role, content = turn.get("role", turn.get("from")), turn.get("content", turn.get("value"))
        if role not in ("system", "user", "assistant", "human", "gpt") or not isinstance(content, str):
            raise DataError(f"{place}: message {position} needs a role (system, user, assistant) and text content")
        messages.append({"role": {"human": "user", "gpt": "assistant"}.get(role, role), "content": content})
    if messages[-1]["role"] != "user":
        raise DataError(f"{place}: the last message is from {messages[-1]['role']!r}; a prompt ends with a user turn")
    return messages


class PromptTokenizer(Tokenizer):
    """Tokenizes ``prompt`` rows into :class:`PromptExample` objects.

    Raises (per row, naming file and row): :class:`DataError` for an empty prompt, malformed
    messages, or messages without a chat template.
    """

    def __call__(self, row: dict, where: str) -> PromptExample:  # type: ignore[override]
        """Tokenize one (already column-mapped) prompt row; ``where`` names it in errors."""
        prompt = row["prompt"]
        if isinstance(prompt, str):
            if not prompt.strip():
                raise DataError(f"{where}: column 'prompt' is empty")
            ids = list(self.tok(prompt, add_special_tokens=True)["input_ids"])
        else:
            messages = _prompt_messages(prompt, where)
            if not getattr(self.tok, "chat_template", None):
                raise DataError(f"{where}: chat messages need a tokenizer with a chat template")
            ids = self._chat_ids(messages, add_generation_prompt=True)
        if len(ids) > self.max_seq_len:
            self.truncated += 1
            ids = ids[-self.max_seq_len :]
        return PromptExample(ids, dict(row), where)
