"""Exercises: the fine-tuned model's responses to the test set (book §7.7)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from tqdm import tqdm  # noqa: F401  (the book's progress bar over the test set)

from reference.collate import PAD_TOKEN_ID  # noqa: F401
from reference.generation import generate, text_to_token_ids, token_ids_to_text  # noqa: F401
from reference.instruction_data import format_input  # noqa: F401

RESPONSE_HEADERS = {"alpaca": ("### Response:",), "phi3": ("<|assistant|>:", "<|assistant|>")}


def extract_response(generated_text: str, input_text: str, *, style: str = "alpaca") -> str:
    """The model's answer: the text after the prompt, minus the response header, stripped (book §7.7)."""
    raise NotImplementedError(
        "Slice generated_text after len(input_text) (book §7.7), remove '### Response:' (or "
        "'<|assistant|>:' for exercise 7.1's style='phi3') and strip whitespace"
    )


def generate_test_responses(
    model: nn.Module,
    tokenizer: Any,
    test_data: list[dict],
    device: torch.device | str,
    max_new_tokens: int = 256,
    *,
    style: str = "alpaca",
) -> list[dict]:
    """Add the model's greedy answer to every test entry as `model_response` (book §7.7)."""
    raise NotImplementedError(
        "For each entry (under tqdm): generate(model, text_to_token_ids(format_input(entry)), "
        "max_new_tokens, context_size=model.pos_emb.weight.shape[0], eos_id=PAD_TOKEN_ID), "
        "then test_data[i]['model_response'] = extract_response(...); return test_data "
        "(book §7.7)"
    )
