"""Exercises: the fine-tuned model's responses to the test set (book §7.7)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
from torch import nn

from reference.generation import generate, text_to_token_ids, token_ids_to_text  # noqa: F401
from reference.instruction_data import format_input  # noqa: F401


def extract_response(generated_text: str, input_text: str, style: str = "alpaca") -> str:
    """The model's answer: the text after the prompt, minus the response header, stripped (book §7.7)."""
    raise NotImplementedError(
        "Slice generated_text after len(input_text) (book §7.7), remove '### Response:' (or "
        "'<|assistant|>:' for exercise 7.1's style='phi3') and strip whitespace"
    )


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
    """Generate the model's response to every test entry into a JSON file (book §7.7)."""
    raise NotImplementedError(
        "For each entry: generate(model, text_to_token_ids(format_input(entry)), ..., eos_id), "
        "extract_response, add 'model_response'; rewrite out_path after each entry and resume "
        "from the entries already in it (book §7.7)"
    )
