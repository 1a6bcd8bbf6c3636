"""Judge a training loop's printed lines on their numbers, not their wording (book §5.2, §6.7).

The book prints `Ep 1 (Step 000000): Train loss 2.153, Val loss 2.392`; a learner may print
`Époque 1 (Étape 000000) : perte 2.153, validation 2.392`, `Step  00000` or `0.614,Val`.
What later code and the reader rely on are the numbers: `lines_carrying` finds, for each
expected row of numbers, the printed line carrying them in order (within the printed
rounding); a line that differs from the book's format only in wording is a *style note*.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

NUMBER = re.compile(r"\d+(?:\.\d+)?")


def numbers(line: str) -> list[float]:
    """The numbers printed on a line, in order (`Step 000007` -> 7.0)."""
    return [float(x) for x in NUMBER.findall(line)]


def carries(line: str, row: Sequence[float], tolerance: float) -> bool:
    """Whether `line` prints the numbers of `row` in this order (others may sit between)."""
    found = iter(numbers(line))
    return all(any(abs(x - want) <= tolerance for x in found) for want in row)


def lines_carrying(
    lines: Sequence[str], rows: Sequence[Sequence[float]], tolerance: float = 5.01e-4
) -> list[str | None]:
    """For each row, the first unused line carrying its numbers in order (None if none does)."""
    used: set[int] = set()
    found: list[str | None] = []
    start = 0
    for row in rows:
        match = next(
            (
                i
                for i in range(start, len(lines))
                if i not in used and carries(lines[i], row, tolerance)
            ),
            None,
        )
        if match is not None:
            used.add(match)
            start = match + 1
        found.append(lines[match] if match is not None else None)
    return found


def style_note(lines: Sequence[str], pattern: re.Pattern, example: str) -> str | None:
    """A note when lines carrying the right numbers are worded otherwise than the book's."""
    other = [line for line in lines if line is not None and not pattern.fullmatch(line)]
    if not other:
        return None
    return f"printed {other[0]!r}; the book prints {example!r} (wording only: not a failure)"
