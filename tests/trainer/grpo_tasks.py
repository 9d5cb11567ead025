"""Reward functions and tasks for the GRPO tests (imported by path, like a user's reward module)."""

from __future__ import annotations

#: The colour-word task: a prompt ``The <thing> is colored`` earns 1.0 when the one-token
#: completion is a colour. SmolLM2-135M's base rate is about 0.2 (it prefers " with", " by"...).
COLOURS = r"(red|blue|green|yellow|pink|white|black|orange|purple|brown|gray|grey|gold|silver)"


def colour_prompt(thing: str) -> str:
    """The colour task's prompt for ``thing``."""
    return f"The {thing} is colored"


def length_score(prompt_row: dict, completions: list[str]) -> list[float]:
    """A reward with many distinct values: the completion's length in characters, modulo 5, over 4."""
    return [(len(text) % 5) / 4 for text in completions]


def raises(prompt_row: dict, completions: list[str]) -> list[float]:
    """A reward function with a bug that shows on rows with ``n`` 2 only."""
    if prompt_row.get("n") == 2:
        raise KeyError("score")
    return [0.0] * len(completions)


def one_short(prompt_row: dict, completions: list[str]) -> list[float]:
    """One reward fewer than completions."""
    return [1.0] * (len(completions) - 1)


def not_a_number(prompt_row: dict, completions: list[str]) -> list:
    """A reward that is not a number."""
    return ["high"] * len(completions)
