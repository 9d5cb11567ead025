"""A synthetic preference task the base model does not know: prefer the swapped words.

For the prompt ``swap: a b =>`` the chosen answer is `` b a`` and the rejected one `` a b``
(the copy, which a base model tends to prefer).
"""

from __future__ import annotations

from synthetic_jobs import swap_prompt


def swap_preference_rows(pairs: list[tuple[str, str]]) -> list[dict]:
    """Preference-format rows of the swap task."""
    return [{"prompt": swap_prompt(a, b), "chosen": f" {b} {a}", "rejected": f" {a} {b}"} for a, b in pairs]
