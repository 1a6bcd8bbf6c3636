"""Exercises: score model responses with a local LLM judge served by Ollama (book §7.8).

Write `query_model` and `generate_model_scores`; the tests run them against a fake
Ollama on loopback (or a fake `query_model`), so you need no 8B model. The kit's
own judge client, with retries and a resumable scores file, is `ftkit/ollama.py`.
"""

from __future__ import annotations

import json  # noqa: F401
import urllib.request  # noqa: F401
from collections.abc import Sequence

from tqdm import tqdm  # noqa: F401  (the book's progress bar over the entries)

from exercises.instruction_data import format_input  # noqa: F401

DEFAULT_URL = "http://localhost:11434/api/chat"  # Ollama's chat endpoint on this machine
JUDGE_OPTIONS = {"seed": 123, "temperature": 0, "num_ctx": 2048}
JUDGE_PROMPT = (
    "Given the input `{input}` "
    "and correct output `{output}`, "
    "score the model response `{response}`"
    " on a scale from 0 to 100, where 100 is the best score. "
    "Respond with the integer number only."
)


def query_model(prompt: str, model: str = "llama3", url: str = DEFAULT_URL) -> str:
    """Send `prompt` to an Ollama chat model and return its whole answer (book §7.8)."""
    raise NotImplementedError(
        "POST json {'model', 'messages': [{'role': 'user', 'content': prompt}], 'options': "
        "JUDGE_OPTIONS} to url with urllib.request, then join message.content of each NDJSON "
        "line of the answer (book §7.8)"
    )


def generate_model_scores(
    json_data: Sequence[dict], json_key: str, model: str = "llama3"
) -> list[int]:
    """Ask the judge to score `entry[json_key]` for every entry; answers that are no integer are skipped (book §7.8)."""
    raise NotImplementedError(
        "For each entry (under tqdm): JUDGE_PROMPT.format(input=format_input(entry), "
        "output=entry['output'], response=entry[json_key]), query_model(prompt, model), "
        "append int(answer), or print 'Could not convert score: ...' and skip (book §7.8)"
    )
