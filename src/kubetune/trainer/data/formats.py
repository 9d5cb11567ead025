"""Turn raw rows into token sequences with training targets, per dataset format.

Each example is ``input_ids`` plus ``labels`` of the same length, where a label of
``IGNORE_INDEX`` marks a token that is not trained on. By default only response tokens are
targets; the end-of-sequence token that closes a response is always a target, so the model
learns to stop.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from kubetune.errors import ConfigError, DataError
from kubetune.spec.trainer import DatasetConfig

IGNORE_INDEX = -100

REQUIRED_COLUMNS = {
    "alpaca": ("instruction", "output"),
    "completion": ("prompt", "completion"),
    "messages": ("messages",),
    "text": ("text",),
    "classification": ("text", "label"),
    "tagging": ("tokens", "tags"),
    "preference": ("prompt", "chosen", "rejected"),
    "kto": ("prompt", "completion", "label"),
}
#: Columns a format reads when present (absent or null: empty); they too must hold text.
OPTIONAL_TEXT_COLUMNS = {"alpaca": ("input",)}

ALPACA_PROMPT = (
    "Below is an instruction that describes a task{context}. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n{input_block}### Response:\n"
)


@dataclass
class Example:
    """One tokenized training sequence.

    ``labels`` holds a target token per position (language modelling), or a class per position
    (``tagged``: token classification, no shift); a classification example has no token targets
    and one ``class_label`` instead.
    """

    input_ids: list[int]
    labels: list[int]
    class_label: int | None = None
    tagged: bool = False

    @property
    def num_targets(self) -> int:
        """How many targets of this example the loss is computed on."""
        if self.class_label is not None:
            return 1
        return sum(1 for label in self.labels if label != IGNORE_INDEX)


def class_names(rows: list[dict], config: DatasetConfig, places: list[str], source: str) -> list[str]:
    """The classes of a ``classification`` (``label``) or ``tagging`` (``tags``) dataset, in label-index order.

    ``dataset.labels`` wins; otherwise integer labels ``0..n-1`` name themselves, and string
    labels are sorted. ``places[i]`` names row ``i`` in errors; ``source`` names the dataset.

    Raises:
        DataError: a row's label is not one of ``dataset.labels``, a row's tags are not a list, or
            fewer than two classes.
    """
    column = "tags" if config.format == "tagging" else "label"
    by_row = [
        (place, label) for place, row in zip(places, rows, strict=True) for label in _row_labels(row, column, place)
    ]
    seen = [label for _, label in by_row]
    if config.labels is not None:
        names = list(config.labels)
        allowed = set(names) | {str(i) for i in range(len(names))}
        for place, label in by_row:
            if str(label) not in allowed:
                raise DataError(f"{place}: column {column!r}: {label!r} is not one of dataset.labels {names}")
        return names
    if seen and all(isinstance(label, int) and not isinstance(label, bool) for label in seen):
        if min(seen) < 0:
            place = by_row[seen.index(min(seen))][0]
            raise DataError(f"{place}: column {column!r}: integer labels must be 0 or more (found {min(seen)})")
        names = [str(i) for i in range(max(seen) + 1)]
    else:
        names = sorted({str(label) for label in seen})
    if len(names) < 2:
        raise DataError(f"{source}: a {config.format} dataset needs at least two classes (found {names})")
    return names


def _row_labels(row: dict, column: str, place: str) -> list:
    if column == "label":
        return [row["label"]]
    if not isinstance(row["tags"], list):
        raise DataError(f"{place}: column 'tags' must be a list (one tag per word)")
    return row["tags"]


def load_preprocess(import_path: str) -> Callable[[dict], dict]:
    """Import the user's ``module:function`` row mapper."""
    module_name, _, func_name = import_path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ConfigError(f"dataset.preprocess: cannot import module {module_name!r}: {err}") from None
    func = getattr(module, func_name, None)
    if not callable(func):
        raise ConfigError(f"dataset.preprocess: {module_name!r} has no function {func_name!r}")
    return func


def _kind_of(value: object) -> str:
    """How a JSON-ish value is called in messages: ``a number (5)``, ``a list``, ``an object``."""
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, int | float):
        return f"a number ({value!r})"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, str):
        return "text"
    return f"a {type(value).__name__}"


def _check_row(row: dict, config: DatasetConfig, place: str) -> None:
    """One mapped row has every column its format needs, each of the right type.

    Raises:
        DataError: naming the place (``file:line``), the column and what is wrong with it.
    """
    fmt = config.format
    required = REQUIRED_COLUMNS[fmt]
    missing = [col for col in required if col not in row]
    if missing:
        renamed = {ours: theirs for ours, theirs in config.column_map.items() if ours in missing}
        hint = f" (mapped from {renamed})" if renamed else ""
        present = ", ".join(sorted(map(str, row))) or "none"
        raise DataError(
            f"{place}: no column {', '.join(map(repr, missing))}{hint} needed by format '{fmt}'; "
            f"columns present: {present}. Use dataset.column_map to rename."
        )
    for column in required + OPTIONAL_TEXT_COLUMNS.get(fmt, ()):
        value = row.get(column)
        if value is None:
            if column in required:
                raise DataError(f"{place}: column {column!r} is null; format '{fmt}' needs a value there")
            continue
        if column == "messages":
            _normalise_messages(value, place)
        elif column in ("tokens", "tags"):
            if not isinstance(value, list):
                raise DataError(
                    f"{place}: column {column!r} is {_kind_of(value)}; format '{fmt}' needs a list (one per word)"
                )
        elif fmt in ("preference", "kto") and column in ("prompt", "chosen", "rejected", "completion"):
            if not isinstance(value, str | list):
                raise DataError(
                    f"{place}: column {column!r} is {_kind_of(value)}; format {fmt!r} needs text or messages"
                )
        elif fmt == "kto" and column == "label":
            if not isinstance(value, bool):
                raise DataError(
                    f"{place}: column 'label' is {_kind_of(value)}; format 'kto' needs true (desirable) or false"
                )
        elif column == "label":
            if not isinstance(value, str | int) or isinstance(value, bool):
                raise DataError(
                    f"{place}: column 'label' is {_kind_of(value)}; a class label is text or a whole number"
                )
        elif not isinstance(value, str):
            raise DataError(f"{place}: column {column!r} is {_kind_of(value)}; format '{fmt}' needs text there")


def map_columns(rows: list[dict], config: DatasetConfig, places: list[str]) -> list[dict]:
    """Apply the preprocess function and ``column_map``, then check the format's columns and their types.

    ``places[i]`` says where row ``i`` is (``file:line``, see :func:`~kubetune.trainer.data.readers.read_rows`).

    Raises:
        DataError: a row lacks a column the format needs, holds null there, or a value of the
            wrong type (a number, list or object where text is needed; a malformed conversation),
            naming file, line and column.
    """
    if config.preprocess:
        func = load_preprocess(config.preprocess)
        mapped = []
        for place, row in zip(places, rows, strict=True):
            result = func(row)
            if not isinstance(result, dict):
                raise DataError(
                    f"{place}: preprocess {config.preprocess} returned {type(result).__name__}, expected a dict"
                )
            mapped.append(result)
        rows = mapped
    if config.column_map:
        rows = [
            {**row, **{ours: row[theirs] for ours, theirs in config.column_map.items() if theirs in row}}
            for row in rows
        ]
    for place, row in zip(places, rows, strict=True):
        _check_row(row, config, place)
    return rows


def _normalise_messages(messages: object, where: str) -> list[dict]:
    """Accept OpenAI ({role, content}) and ShareGPT ({from, value}) messages; check role order."""
    where = f"{where}: column 'messages'"
    if not isinstance(messages, list) or not messages:
        raise DataError(f"{where} must be a non-empty list of messages (got {_kind_of(messages)})")
    roles = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}
    out = []
    for position, turn in enumerate(messages):
        if not isinstance(turn, dict):
            raise DataError(f"{where}: message {position} is {_kind_of(turn)}, not an object with role and content")
        given_role = turn.get("role", turn.get("from"))
        role = roles.get(str(given_role)) if isinstance(given_role, str) else None
        if role is None:
            raise DataError(
                f"{where}: message {position} has role {given_role!r}; roles are system, user and assistant"
            )
        content = turn.get("content", turn.get("value"))
        if not isinstance(content, str):
            what = "no content" if content is None else f"content that is {_kind_of(content)}"
            raise DataError(f"{where}: message {position} ({role}) has {what}; it needs text")
        out.append({"role": role, "content": content})
    body = out[1:] if out[0]["role"] == "system" else out
    expected = ["user", "assistant"]
    for position, turn in enumerate(body):
        if turn["role"] != expected[position % 2]:
            raise DataError(
                f"{where}: invalid role order: message {position + len(out) - len(body)} is "
                f"'{turn['role']}', expected '{expected[position % 2]}' (system?, then user/assistant alternating)"
            )
    if not body or body[-1]["role"] != "assistant":
        raise DataError(f"{where}: a conversation must end with an assistant message")
    return out


def alpaca_prompt(row: dict) -> str:
    """The prompt of an ``alpaca`` row (:data:`ALPACA_PROMPT` filled with its instruction and input)."""
    extra = str(row.get("input") or "")
    return ALPACA_PROMPT.format(
        context=", paired with an input that provides further context" if extra else "",
        instruction=row["instruction"],
        input_block=f"### Input:\n{extra}\n\n" if extra else "",
    )


class Tokenizer:
    """Tokenizes rows of one format into :class:`Example` objects."""

    def __init__(self, tokenizer, config: DatasetConfig, max_seq_len: int, label_names: list[str] | None = None):
        self.tok = tokenizer
        self.config = config
        self.max_seq_len = max_seq_len
        self.truncated = 0
        self.label_index = {name: index for index, name in enumerate(label_names or [])}
        if tokenizer.eos_token_id is None and config.format not in ("classification", "tagging"):
            raise DataError("the tokenizer defines no end-of-sequence token")
        if config.format == "messages" and not getattr(tokenizer, "chat_template", None):
            raise DataError(
                "dataset.format is 'messages' but the model's tokenizer has no chat template; "
                "use format 'alpaca' or 'completion', or a model with a chat template"
            )

    def _prompt_ids(self, prompt: str) -> list[int]:
        return list(self.tok(prompt, add_special_tokens=True)["input_ids"])

    def _pair(self, prompt: str, response: str) -> Example:
        prompt_ids = self._prompt_ids(prompt)
        response_ids = self.tok(response, add_special_tokens=False)["input_ids"] + [self.tok.eos_token_id]
        prompt_labels = list(prompt_ids) if self.config.train_on_inputs else [IGNORE_INDEX] * len(prompt_ids)
        return Example(list(prompt_ids) + response_ids, prompt_labels + response_ids)

    def _messages(self, messages: list[dict]) -> Example:
        ids = self._chat_ids(messages, add_generation_prompt=False)
        labels = list(ids) if self.config.train_on_inputs else [IGNORE_INDEX] * len(ids)
        for index, turn in enumerate(messages):
            if turn["role"] != "assistant":
                continue
            start = len(self._chat_ids(messages[:index], add_generation_prompt=True))
            end = len(self._chat_ids(messages[: index + 1], add_generation_prompt=False))
            labels[start:end] = ids[start:end]
        return Example(ids, labels)

    def _classify(self, row: dict) -> Example:
        ids = list(self.tok(str(row["text"]), add_special_tokens=True)["input_ids"])
        index = self._class_index(row["label"])
        if len(ids) > self.max_seq_len:
            self.truncated += 1
            ids = ids[: self.max_seq_len]
        return Example(ids, [], class_label=index)

    def _tag(self, row: dict, where: str) -> Example:
        words, tags = row["tokens"], row["tags"]
        if not isinstance(words, list) or not words or not isinstance(tags, list) or len(tags) != len(words):
            raise DataError(f"{where}: 'tokens' and 'tags' must be non-empty lists of the same length")
        encoded = self.tok([str(word) for word in words], is_split_into_words=True, add_special_tokens=True)
        try:
            word_ids = encoded.word_ids()
        except ValueError:
            raise DataError("dataset.format 'tagging' needs a fast tokenizer (tokenizer.json)") from None
        labels, previous = [], None
        for word in word_ids:
            labels.append(IGNORE_INDEX if word is None or word == previous else self._class_index(tags[word]))
            previous = word
        ids = list(encoded["input_ids"])
        if len(ids) > self.max_seq_len:
            self.truncated += 1
            ids, labels = ids[: self.max_seq_len], labels[: self.max_seq_len]
        return Example(ids, labels, tagged=True)

    def _class_index(self, label: object) -> int:
        return self.label_index[str(label)] if str(label) in self.label_index else int(label)

    def _chat_ids(self, messages: list[dict], add_generation_prompt: bool) -> list[int]:
        rendered = self.tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
        return list(self.tok(rendered, add_special_tokens=False)["input_ids"])

    def prompt_and_reference(self, row: dict, where: str) -> tuple[list[int], str]:
        """The prompt tokens a model answers, rendered exactly as training renders them (the
        prompt template, or the chat template up to the last assistant turn with its generation
        prompt), and the reference answer (the response training targets).

        Raises:
            DataError: a format without a prompt and an answer (``text``, ``tagging``, ``classification``).
        """
        fmt = self.config.format
        if fmt == "alpaca":
            return self._prompt_ids(alpaca_prompt(row)), str(row["output"])
        if fmt == "completion":
            return self._prompt_ids(str(row["prompt"])), str(row["completion"])
        if fmt == "messages":
            messages = _normalise_messages(row["messages"], where)
            return self._chat_ids(messages[:-1], add_generation_prompt=True), messages[-1]["content"]
        raise DataError(f"{where}: format {fmt!r} rows have no prompt and reference answer to generate")

    def __call__(self, row: dict, where: str) -> Example:
        """Tokenize one (already column-mapped) row; ``where`` names it in errors."""
        fmt = self.config.format
        if fmt == "classification":
            return self._classify(row)
        if fmt == "tagging":
            return self._tag(row, where)
        if fmt == "alpaca":
            example = self._pair(alpaca_prompt(row), str(row["output"]))
        elif fmt == "completion":
            example = self._pair(str(row["prompt"]), str(row["completion"]))
        elif fmt == "messages":
            example = self._messages(_normalise_messages(row["messages"], where))
        else:
            ids = self.tok(str(row["text"]), add_special_tokens=True)["input_ids"] + [self.tok.eos_token_id]
            example = Example(list(ids), list(ids))
        if len(example.input_ids) > self.max_seq_len:
            self.truncated += 1
            example = Example(example.input_ids[: self.max_seq_len], example.labels[: self.max_seq_len])
        return example
