"""`reference/` beside the book's package: every difference (after `# kit:` lines) is listed and known.

`tests/kit/book_drift.py` compares each reference function and method with the book
package's (`llms_from_scratch`); `python -m tests.kit.book_drift` prints the diffs.
KNOWN lists the functions that still differ, each with why: a new difference fails
(mark the kit's lines `# kit:` or write the book's code), and so does a listed one that
no longer differs (take it off the list), so the drift can only shrink, visibly.
"""

from __future__ import annotations

import pytest

from tests.book_package import book_module
from tests.kit.book_drift import book_statements, drift, reference_modules

book_module("ch04")  # skips with the install command when the book's package is absent

REWRITTEN = "the same computation written shorter or with the kit's names (same numbers)"
PRINTED = "the printed book's listing, which the package's code differs from"
CHECKS = "unmarked kit checks or options (clear errors, exercise options): to mark `# kit:`"
PLOT = "plots drawn on a matplotlib Figure (no pyplot window), files written by ftkit"

KNOWN = {
    "model.LayerNorm.forward": REWRITTEN,
    "model.GELU.forward": REWRITTEN + " (math.pi: the float32 constant is the same)",
    "model.MultiHeadAttention.__init__": CHECKS,
    "model.MultiHeadAttention.forward": REWRITTEN + " (split_heads, as exercises/ mirrors it)",
    "model.TransformerBlock.__init__": PRINTED + " (drop_shortcut, §4.5)",
    "model.TransformerBlock.forward": REWRITTEN,
    "model.GPTModel.forward": REWRITTEN,
    "generation.text_to_token_ids": CHECKS,
    "generation.token_ids_to_text": CHECKS,
    "generation.generate_text_simple": PRINTED + " (softmax before argmax, §4.7)",
    "generation.generate": "min_val per row (`# kit:`): the book's [:, -1] serves one row only",
    "training.calc_loss_batch": REWRITTEN,
    "training.generate_and_print_sample": REWRITTEN,
    "training.plot_losses": PLOT,
    "weights.assign": CHECKS + " (tensors as well as arrays; the model's dtype and device)",
    "spam_data.create_balanced_dataset": CHECKS,
    "spam_data.SpamDataset.__init__": CHECKS,
    "spam_data.SpamDataset.__getitem__": REWRITTEN,
    "spam_data.SpamDataset._longest_encoded_length": REWRITTEN,
    "classifier.calc_accuracy_loader": CHECKS + " (token_position, exercise 6.3)",
    "classifier.calc_loss_batch": CHECKS + " (token_position, exercise 6.3)",
    "classifier.calc_loss_loader": REWRITTEN + "; token_position (exercise 6.3)",
    "classifier.evaluate_model": CHECKS + " (token_position, exercise 6.3)",
    "classifier.train_classifier_simple": CHECKS + " (token_position, exercise 6.3)",
    "classifier.plot_values": PLOT,
    "classifier.classify_review": CHECKS + " (token_position, exercise 6.3)",
    "instruction_data.format_input": CHECKS + " (style, exercise 7.1)",
    "instruction_data.InstructionDataset.__init__": CHECKS + " (style, exercise 7.1)",
    "collate.custom_collate_draft_1": REWRITTEN + " (shared padding helper)",
    "collate.custom_collate_draft_2": REWRITTEN + " (shared padding helper)",
    "collate.custom_collate_fn": REWRITTEN + " (shared padding helper; exercise 7.2 masking)",
    "judge.query_model": CHECKS + " (timeouts, clear errors)",
    "judge.generate_model_scores": CHECKS,
    "lora.LoRALayer.__init__": CHECKS,
    "lora.LoRALayer.forward": REWRITTEN,
    "lora.LinearWithLoRA.__init__": CHECKS,
    "lora.replace_linear_with_lora": CHECKS,
}

# Functions brought back to the book's text: they must stay identical (random_split: its
# named parts are what a swapped return order is told in, issue 19).
BOOK_AS_PRINTED = ("weights.load_weights_into_gpt", "spam_data.random_split")


@pytest.fixture(scope="module")
def found() -> dict[str, str]:
    return drift(reference_modules())


def test_every_difference_from_the_book_is_known(found):
    new = {key: diff for key, diff in found.items() if key not in KNOWN}
    assert not new, "reference/ drifted from the book's package (mark `# kit:` lines):\n" + (
        "\n\n".join(new.values())
    )


def test_no_known_difference_is_stale(found):
    stale = sorted(set(KNOWN) - set(found))
    assert not stale, f"these now read as the book's: take them off KNOWN: {stale}"


def test_book_functions_read_as_printed(found):
    assert not [key for key in BOOK_AS_PRINTED if key in found]


def test_kit_lines_are_left_out_of_the_comparison():
    source = (
        "def f(x):\n"
        "    check(x)  # kit: a clear error\n"
        "    # kit: the next statement is the kit's\n"
        "    if x:\n"
        "        raise ValueError\n"
        "    return x + 1\n"
    )
    assert book_statements(source, drop_kit=True)[0] == ["return x + 1"]
    assert len(book_statements(source, drop_kit=False)[0]) == 4
