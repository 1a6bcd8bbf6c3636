"""The recipe's respond step: the book's §7.7 loop made resumable, its file written atomically.

`write_test_responses` answers each test entry as the book's `generate_test_responses`
does (greedy, stopping at end-of-text, the response header removed) and rewrites the
responses file (`instruction-data-with-response.json`, the book's format, indent 4)
after every entry, so an interrupted run resumes from the entries already written;
a file made for another test set is an error, never silently extended.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from tqdm import tqdm

from ftkit.checks import context_length, positive_int
from ftkit.engine.kv_cache import transposed_linears
from ftkit.io.files import write_text_atomic
from reference.collate import PAD_TOKEN_ID
from reference.evaluation import RESPONSE_HEADERS, extract_response
from reference.generation import generate, text_to_token_ids, token_ids_to_text
from reference.instruction_data import format_input

if TYPE_CHECKING:
    from ftkit.engine.backend import Backend
    from ftkit.engine.distributed import Dist

MATCH_KEYS = ("instruction", "input")


def _same_entry(done: dict, entry: dict) -> bool:
    return all(done.get(key) == entry.get(key) for key in MATCH_KEYS)


def load_done(out_path: Path, test_data: Sequence[dict]) -> list[dict]:
    """Entries an earlier run already answered, checked against `test_data` in order."""
    if not out_path.exists():
        return []
    try:
        done = json.loads(out_path.read_text(encoding="utf-8"))
    except ValueError as err:
        raise ValueError(
            f"{out_path}: not a JSON responses file ({err}); move it away to start over"
        ) from err
    if not isinstance(done, list) or len(done) > len(test_data):
        raise ValueError(
            f"{out_path} holds {len(done) if isinstance(done, list) else 'no list of'} entries "
            f"but the test set has {len(test_data)}: it belongs to another test set; use "
            "another out_path or move the file away"
        )
    for i, (old, entry) in enumerate(zip(done, test_data)):
        if not isinstance(old, dict) or "model_response" not in old or not _same_entry(old, entry):
            raise ValueError(
                f"{out_path}: entry {i} does not match test entry {i} (instruction/input differ "
                "or no model_response): the file belongs to another test set; use another "
                "out_path or move the file away"
            )
    return done


def write_responses(path: Path, data: list[dict]) -> None:
    """The responses file in the book's layout (indent 4), written whole or not at all (§7.7)."""
    write_text_atomic(path, json.dumps(data, indent=4))


def answer(
    model: nn.Module,
    tokenizer: Any,
    entry: dict,
    device: torch.device | str,
    *,
    max_new_tokens: int,
    context_size: int,
    eos_id: int | None,
    style: str,
) -> str:
    """One entry's response, as one step of the book's §7.7 loop."""
    input_text = format_input(entry, style=style)
    token_ids = generate(
        model=model,
        idx=text_to_token_ids(input_text, tokenizer).to(device),
        max_new_tokens=max_new_tokens,
        context_size=context_size,
        eos_id=eos_id,
    )
    return extract_response(token_ids_to_text(token_ids, tokenizer), input_text, style=style)


def answer_each(
    model: nn.Module,
    tokenizer: Any,
    entries: Sequence[dict],
    device: torch.device | str,
    **options: Any,
) -> list[str]:
    """Several entries' responses, one at a time with the book's `generate` (the §7.7 loop)."""
    return [answer(model, tokenizer, entry, device, **options) for entry in entries]


def answer_batch(
    model: nn.Module,
    tokenizer: Any,
    entries: Sequence[dict],
    device: torch.device | str,
    *,
    max_new_tokens: int,
    context_size: int,
    eos_id: int | None,
    style: str,
) -> list[str]:
    """Several entries' responses at once (KV cache): each the one `answer` gives it (book §7.7)."""
    from ftkit.engine.batched import generate_batch

    if not entries:
        return []
    inputs = [format_input(entry, style=style) for entry in entries]
    generated = generate_batch(
        model,
        [text_to_token_ids(text, tokenizer)[0].tolist() for text in inputs],
        max_new_tokens,
        context_size,
        eos_id,
        device=device,
    )
    return [
        extract_response(token_ids_to_text(torch.tensor(ids), tokenizer), text, style=style)
        for ids, text in zip(generated, inputs)
    ]


def write_test_responses(
    model: nn.Module,
    tokenizer: Any,
    test_data: Sequence[dict],
    device: torch.device | str,
    out_path: str | os.PathLike,
    *,
    max_new_tokens: int = 256,
    eos_id: int | None = PAD_TOKEN_ID,
    style: str = "alpaca",
    context_size: int | None = None,
    progress: bool = True,
    batch_size: int = 8,
    backend: Backend | None = None,
    dist: Dist | None = None,
) -> list[dict]:
    """Generate the model's response to every test entry into a JSON file, resumably (book §7.7).

    Each entry is copied with `model_response` added (greedy decoding, stopping at
    `eos_id`, as the book). `out_path` is rewritten atomically after every entry; a
    rerun keeps the entries already there (checked by instruction and input) and
    continues with the rest. `context_size` defaults to the model's context length.
    The model is evaluated in eval mode and given back in the mode it came in.
    Returns the answered entries; `test_data` is not modified.

    The run's `backend` (`ftkit.engine.backend.make_backend`, default the fast path)
    says how entries are answered (`Backend.respond_steps`): on the fast path
    `batch_size` at once with a KV cache (`ftkit.engine.batched.generate_batch`: each
    entry's greedy tokens are those of the book's `generate` for it alone); on the
    exact path one at a time with the book's `generate`, as §7.7 does. The file is
    rewritten after each batch.

    With `dist` (`ftkit.engine.distributed.Dist`, default one process) each of N ranks
    answers its share of every N batches the same way; rank 0 writes them in the book's
    order, so the file is the one a single process writes.
    """
    from ftkit.engine.backend import backend_unless
    from ftkit.engine.distributed import one_unless

    dist, backend = one_unless(dist), backend_unless(backend, device)
    positive_int(batch_size, "batch_size")
    if style not in RESPONSE_HEADERS:
        raise ValueError(f"unknown prompt style {style!r}; choose one of {list(RESPONSE_HEADERS)}")
    out_path = Path(out_path)
    done = load_done(out_path, test_data)
    if context_size is None:
        context_size = context_length(model)
    was_training = model.training
    model.eval()  # no dropout: the responses must be the model's deterministic answers
    try:
        bar = tqdm(
            total=len(test_data),
            initial=len(done),
            desc="Generating responses",
            disable=not dist.shows(progress),
        )
        # one set of transposed weight copies for every batch (the book's `generate`,
        # on the exact path, never asks for them)
        options = {
            "max_new_tokens": max_new_tokens,
            "context_size": context_size,
            "eos_id": eos_id,
            "style": style,
        }
        per_rank, answer_entries = backend.respond_steps(batch_size)
        with bar, transposed_linears():
            for entries, mine in dist.shares(test_data, per_rank, start=len(done)):
                replies = answer_entries(model, tokenizer, mine, device, **options)
                responses = [r for part in dist.gather(replies) for r in part]  # rank order
                done += [{**e, "model_response": r} for e, r in zip(entries, responses)]
                dist.on_main(write_responses, out_path, done)
                bar.update(len(entries))
    finally:
        model.train(was_training)
    if not test_data:
        dist.on_main(write_responses, out_path, done)
    dist.barrier()  # the file is complete before any rank moves on
    return done
