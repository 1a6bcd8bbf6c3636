"""Exercises: score model responses with a local LLM judge served by Ollama (book §7.8).

Write `judge_prompt`, `query_model`, `parse_score` and `generate_model_scores`; the
tests run them against a fake Ollama on loopback, so you need no 8B model. Errors,
the model list, the summary and the histogram are tooling, imported ready-made.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from reference.judge import (  # noqa: F401 - tooling you may use
    DEFAULT_TIMEOUT,
    DEFAULT_URL,
    JUDGE_OPTIONS,
    OllamaError,
    ensure_model_available,
    list_models,
    plot_score_histogram,
    summarize_scores,
    tags_url,
)


def judge_prompt(entry: dict, json_key: str) -> str:
    """The book's scoring prompt for one entry (book §7.8)."""
    raise NotImplementedError(
        "Build the book's f-string: 'Given the input `{format_input(entry)}` and correct output "
        "`{entry['output']}`, score the model response `{entry[json_key]}` on a scale from 0 to "
        "100, where 100 is the best score. Respond with the integer number only.' (book §7.8)"
    )


def query_model(
    prompt: str,
    model: str = "llama3",
    url: str = DEFAULT_URL,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    retries: int = 3,
    backoff: float = 1.0,
) -> str:
    """Send `prompt` to an Ollama chat model and return its whole answer (book §7.8)."""
    raise NotImplementedError(
        "POST {'model', 'messages': [{'role': 'user', 'content': prompt}], 'options': "
        "JUDGE_OPTIONS} to url, then join message.content of each NDJSON line until done (book §7.8)"
    )


def parse_score(text: str) -> int | None:
    """The judge's 0-100 score in `text`, or None when there is no usable number."""
    raise NotImplementedError(
        "Drop any <think>...</think> block, find the score ('85', 'Score: 85', '85/100'), "
        "return None when it is missing or outside 0..100 (book §7.8)"
    )


def generate_model_scores(
    json_data: Sequence[dict],
    json_key: str,
    model: str = "llama3",
    url: str = DEFAULT_URL,
    *,
    scores_path: str | os.PathLike | None = None,
    progress: bool = True,
) -> list[int]:
    """Ask the judge to score `entry[json_key]` for every entry; scores in entry order (book §7.8)."""
    raise NotImplementedError(
        "For each entry: empty response -> 0, else query_model(judge_prompt(...)) and "
        "parse_score; skip unparsable answers; with scores_path append one JSON line per entry "
        "and skip entries already in it (book §7.8)"
    )
