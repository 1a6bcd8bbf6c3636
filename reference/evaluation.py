"""The fine-tuned model's responses to the test set, for the judge to score (book §7.7).

For each test entry the model continues the prompt; the response is what follows the
prompt, without the "### Response:" header the model writes itself. The kit's
resumable run that writes `instruction-data-with-response.json` after every entry
is `ftkit/engine/respond.py`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from reference.collate import PAD_TOKEN_ID
from reference.generation import generate, text_to_token_ids, token_ids_to_text
from reference.instruction_data import format_input

# kit: what the model writes between the prompt and its answer, per prompt style: the
# Alpaca header of §7.2, and the Phi-3 assistant tag of exercise 7.1 ("<|assistant|>:").
RESPONSE_HEADERS = {"alpaca": ("### Response:",), "phi3": ("<|assistant|>:", "<|assistant|>")}


def extract_response(generated_text: str, input_text: str, *, style: str = "alpaca") -> str:
    """The model's answer: the text after the prompt, minus the response header, stripped (book §7.7).

    `style="phi3"` removes exercise 7.1's `<|assistant|>:` tag instead of "### Response:".
    """
    if style not in RESPONSE_HEADERS:  # kit: input checks
        raise ValueError(f"unknown prompt style {style!r}; choose one of {list(RESPONSE_HEADERS)}")
    if not generated_text.startswith(input_text):  # kit:
        raise ValueError(
            "generated_text does not start with the prompt (input_text): pass the decoded "
            "prompt + generated tokens, as `generate` returns them. It starts with "
            f"{generated_text[:60]!r}, the prompt with {input_text[:60]!r}"
        )
    response_text = generated_text[len(input_text) :]
    for header in RESPONSE_HEADERS[style]:
        response_text = response_text.replace(header, "")
    return response_text.strip()


def generate_test_responses(
    model: nn.Module,
    tokenizer: Any,
    test_data: list[dict],
    device: torch.device | str,
    max_new_tokens: int = 256,
    *,
    style: str = "alpaca",
) -> list[dict]:
    """Add the model's greedy answer to every test entry as `model_response` (book §7.7).

    As the book's loop: each entry of `test_data` gets its `model_response` in place,
    generation stops at the end-of-text token or after `max_new_tokens`, and the
    context is the model's. `style="phi3"` is exercise 7.1. Returns `test_data`.
    """
    context_size = model.pos_emb.weight.shape[0]  # the book's BASE_CONFIG["context_length"]
    for i, entry in tqdm(enumerate(test_data), total=len(test_data)):
        input_text = format_input(entry, style=style)
        token_ids = generate(
            model=model,
            idx=text_to_token_ids(input_text, tokenizer).to(device),
            max_new_tokens=max_new_tokens,
            context_size=context_size,
            eos_id=PAD_TOKEN_ID,
        )
        generated_text = token_ids_to_text(token_ids, tokenizer)
        test_data[i]["model_response"] = extract_response(generated_text, input_text, style=style)
    return test_data
