"""The fine-tuned model's responses to the test set, for the judge to score (book §7.7).

For each test entry the model continues the prompt; the response is what follows the
prompt, without the "### Response:" header the model writes itself. The responses
file (`instruction-data-with-response.json`, the book's format) is rewritten
atomically after every entry, so an interrupted run resumes from the entries already
written; a file made for another test set is an error, never silently extended.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from ftkit.io.files import write_text_atomic
from reference.generation import generate, text_to_token_ids, token_ids_to_text
from reference.instruction_data import format_input

# What the model writes between the prompt and its answer, per prompt style: the
# Alpaca header of §7.2, and the Phi-3 assistant tag of exercise 7.1 ("<|assistant|>:").
RESPONSE_HEADERS = {"alpaca": ("### Response:",), "phi3": ("<|assistant|>:", "<|assistant|>")}
MATCH_KEYS = ("instruction", "input")


def extract_response(generated_text: str, input_text: str, style: str = "alpaca") -> str:
    """The model's answer: the text after the prompt, minus the response header, stripped (book §7.7).

    `style="phi3"` removes exercise 7.1's `<|assistant|>:` tag instead of "### Response:".
    """
    if style not in RESPONSE_HEADERS:
        raise ValueError(f"unknown prompt style {style!r}; choose one of {list(RESPONSE_HEADERS)}")
    if not generated_text.startswith(input_text):
        raise ValueError(
            "generated_text does not start with the prompt (input_text): pass the decoded "
            "prompt + generated tokens, as `generate` returns them. It starts with "
            f"{generated_text[:60]!r}, the prompt with {input_text[:60]!r}"
        )
    response = generated_text[len(input_text) :]
    for header in RESPONSE_HEADERS[style]:
        response = response.replace(header, "")
    return response.strip()


def _same_entry(done: dict, entry: dict) -> bool:
    return all(done.get(key) == entry.get(key) for key in MATCH_KEYS)


def _load_done(out_path: Path, test_data: Sequence[dict]) -> list[dict]:
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


def _write_json_atomic(path: Path, data: list[dict]) -> None:
    # The book's layout of the responses file (indent 4), written whole or not at all.
    write_text_atomic(path, json.dumps(data, indent=4))


def generate_test_responses(
    model: nn.Module,
    tokenizer,
    test_data: Sequence[dict],
    device: torch.device | str,
    *,
    out_path: str | os.PathLike,
    max_new_tokens: int = 256,
    eos_id: int | None = 50256,
    style: str = "alpaca",
    context_size: int | None = None,
    progress: bool = True,
) -> list[dict]:
    """Generate the model's response to every test entry into a JSON file (book §7.7).

    Each entry is copied with `model_response` added (greedy decoding, stopping at
    `eos_id`, as the book). `out_path` is rewritten atomically after every entry; a
    rerun keeps the entries already there (checked by instruction and input) and
    continues with the rest. `context_size` defaults to the model's context length.
    Returns the answered entries; `test_data` is not modified.
    """
    if style not in RESPONSE_HEADERS:
        raise ValueError(f"unknown prompt style {style!r}; choose one of {list(RESPONSE_HEADERS)}")
    out_path = Path(out_path)
    done = _load_done(out_path, test_data)
    if context_size is None:
        context_size = model.pos_emb.num_embeddings  # GPTModel's context length
    was_training = model.training
    model.eval()  # no dropout: the responses must be the model's deterministic answers
    try:
        bar = tqdm(
            total=len(test_data),
            initial=len(done),
            desc="Generating responses",
            disable=not progress,
        )
        with bar:
            for entry in test_data[len(done) :]:
                input_text = format_input(entry, style=style)
                token_ids = generate(
                    model=model,
                    idx=text_to_token_ids(input_text, tokenizer).to(device),
                    max_new_tokens=max_new_tokens,
                    context_size=context_size,
                    eos_id=eos_id,
                )
                generated_text = token_ids_to_text(token_ids, tokenizer)
                answered = {
                    **entry,
                    "model_response": extract_response(generated_text, input_text, style),
                }
                done.append(answered)
                _write_json_atomic(out_path, done)
                bar.update(1)
    finally:
        model.train(was_training)
    if not test_data:
        _write_json_atomic(out_path, done)
    return done
