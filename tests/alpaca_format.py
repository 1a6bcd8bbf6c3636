"""Generated Alpaca-format entries for exercise 7.3's tests (the real 52k file is not mirrored)."""

from __future__ import annotations


def alpaca_entries(n: int = 36) -> list[dict]:
    """Alpaca-format entries (instruction/input/output); every sixth is far longer than 512 tokens."""
    entries = []
    for i in range(n):
        long = i % 6 == 0
        entries.append(
            {
                "instruction": f"Describe item number {i}.",
                "input": ""
                if i % 2
                else f"Item {i} is a {'very ' * (700 if long else 3)}small box.",
                "output": f"Item {i} is a box. " * (40 if long else 2),
            }
        )
    return entries
