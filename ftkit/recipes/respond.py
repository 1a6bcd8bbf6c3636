"""Chapter 7's evaluation steps: `respond` writes the test-set responses (§7.7), `judge` scores them (§7.8).

Both read what `ftkit.recipes.instruct.finetune` wrote in the output folder and resume
where they stopped when rerun (responses already written, scores already in
`scores.jsonl`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from ftkit.choices import JUDGE_URL
from ftkit.doctor import report_device
from ftkit.engine.distributed import one_unless
from ftkit.recipes.instruct import (
    DEFAULT_MODEL,
    HISTOGRAM_FILE,
    RESPONSES_FILE,
    SCORES_FILE,
    load_dataset,
    load_finetuned,
)


def respond(
    out_dir: str | os.PathLike = ".",
    *,
    model: str = DEFAULT_MODEL,
    device: str = "auto",
    max_new_tokens: int = 256,
    progress: bool = True,
    say: Callable[[str], None] = print,
    dist=None,
    batch_size: int = 8,
    exact: bool = False,
) -> list[dict]:
    """Write the fine-tuned model's answer to every test entry (book §7.7); resumes where it stopped.

    `batch_size` entries are generated at once with a KV cache (the same greedy answers
    as the book's loop, much faster); `exact=True` runs the book's `generate` one entry
    at a time.
    The test set is rebuilt from the settings saved beside the model (data set, limit),
    and prompts use the style it was trained with (exercise 7.1's phi3 included).
    With `dist` (`ftkit.engine.distributed.Dist`) the ranks split every N batches,
    each generating its own the same way (`batch_size`, `exact`), and rank 0 writes the
    one file, in the book's order: the file one process writes.
    """
    from ftkit.engine.backend import make_backend
    from ftkit.engine.respond import write_test_responses
    from ftkit.io.tokenizer import get_tokenizer
    from reference.instruction_data import split_data

    dist = one_unless(dist, device)
    dev = dist.device
    report_device(dev, say)  # one line when this device computes wrong
    gpt, record = load_finetuned(out_dir, model, dev)
    _, test_data, _ = split_data(load_dataset(record["dataset"], record["limit"]))
    out_path = Path(out_dir) / RESPONSES_FILE
    options = {"max_new_tokens": max_new_tokens, "style": record["style"], "progress": progress}
    answered = write_test_responses(
        gpt,
        get_tokenizer(),
        test_data,
        dev,
        out_path,
        batch_size=batch_size,
        backend=make_backend(dev, exact=exact),  # it says how entries are answered
        dist=dist,
        **options,
    )
    say(f"Responses saved as {out_path}")
    return answered


# ------------------------------------------------------------------ judging (§7.8)


def judge_unavailable(url: str, judge_model: str, timeout: float = 3.0) -> str | None:
    """Why the Ollama judge cannot be used right now (short `/api/tags` check), or None if it can."""
    from ftkit.ollama import OllamaError, ensure_model_available

    try:
        ensure_model_available(judge_model, url, timeout=timeout)
    except OllamaError as err:
        return str(err)
    return None


def judge(
    out_dir: str | os.PathLike = ".",
    *,
    url: str = JUDGE_URL,
    judge_model: str = "llama3",
    timeout: float | None = None,
    progress: bool = True,
    say: Callable[[str], None] = print,
) -> dict:
    """Score the test-set responses 0-100 with an Ollama model (book §7.8); resumable via scores.jsonl."""
    from ftkit.ollama import plot_score_histogram, score_responses, summarize_scores

    out = Path(out_dir)
    responses_path = out / RESPONSES_FILE
    if not responses_path.exists():
        raise FileNotFoundError(
            f"no responses at {responses_path}; run `ftkit instruct respond` first"
        )
    entries = json.loads(responses_path.read_text(encoding="utf-8"))
    scores = score_responses(
        entries,
        "model_response",
        judge_model,
        url,
        scores_path=out / SCORES_FILE,
        timeout=timeout,
        progress=progress,
    )
    summary = summarize_scores(scores, total=len(entries))
    histogram = plot_score_histogram(scores, out / HISTOGRAM_FILE)
    say(f"Score histogram saved as {histogram}")
    return {"scores": scores, "summary": summary, "histogram": histogram}
