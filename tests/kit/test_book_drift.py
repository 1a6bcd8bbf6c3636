"""`reference/` beside the book's package: every difference (after `# kit:` lines) is listed and known.

`tests/kit/book_drift.py` compares each reference function and method with the book
package's (`llms_from_scratch`); `python -m tests.kit.book_drift` prints the diffs.
KNOWN lists the functions that still differ, each with why: a new difference fails
(mark the kit's lines `# kit:` or write the book's code), and so does a listed one that
no longer differs (take it off the list), so the drift can only shrink, visibly.
UNMARKED (derived from KNOWN) are the few whose non-book lines are not all marked
`# kit:`; every other difference is only book lines replaced by marked ones.
"""

from __future__ import annotations

import pytest

from tests.book_package import book_module
from tests.kit.book_drift import book_statements, drift, reference_modules, unmarked_lines

book_module("ch04")  # skips with the install command when the book's package is absent

# Why a function differs from the book's package. REPLACED: every line of ours is marked
# `# kit:` (the mark says why), so the diff shows only the book's lines they replace.
REPLACED = "book lines replaced by marked `# kit:` lines (the marks say why)"
PRINTED = "the printed book's listing, which the package's code differs from"
EXERCISE_6_3 = REPLACED + ": token_position (exercise 6.3)"

KNOWN = {
    "model.MultiHeadAttention.forward": REPLACED + ": split_heads, as exercises/ asks for it",
    "model.TransformerBlock.__init__": PRINTED + " (drop_shortcut, §4.5)",
    "model.TransformerBlock.forward": REPLACED + ": one statement per shortcut",
    "generation.text_to_token_ids": REPLACED + ": long ids for an empty text",
    "generation.token_ids_to_text": REPLACED + ": (1, tokens) or (tokens,), clear errors",
    "generation.generate_text_simple": PRINTED + " (softmax before argmax, §4.7)",
    "generation.generate": REPLACED + ": min_val per row; the book's [:, -1] serves one row",
    "training.plot_losses": REPLACED + ": a matplotlib Figure, no pyplot window or file",
    "weights.assign": REPLACED + ": tensors as well as arrays; the model's dtype and device",
    "classifier.calc_accuracy_loader": EXERCISE_6_3,
    "classifier.calc_loss_batch": EXERCISE_6_3,
    "classifier.calc_loss_loader": EXERCISE_6_3,
    "classifier.evaluate_model": EXERCISE_6_3,
    "classifier.train_classifier_simple": EXERCISE_6_3,
    "classifier.plot_values": REPLACED + ": a matplotlib Figure, no pyplot window or file",
    "classifier.classify_review": EXERCISE_6_3 + "; max_length=None",
    "instruction_data.format_input": REPLACED + ": the preamble defined once",
    "instruction_data.InstructionDataset.__init__": REPLACED + ": style (exercise 7.1)",
    "collate.custom_collate_draft_1": "vectorised with the shared padding helper (same tensors)",
    "collate.custom_collate_draft_2": "vectorised with the shared padding helper (same tensors)",
    "collate.custom_collate_fn": "vectorised, shared padding helper, exercise 7.2's masking",
    "judge.query_model": REPLACED + ": the judge's options defined once",
    "judge.generate_model_scores": REPLACED + ": the judge's prompt defined once",
}

# The known differences whose non-book lines are not (all) marked `# kit:`: the printed
# book's own lines, and the collate functions the kit writes its own way.
UNMARKED = sorted(key for key, why in KNOWN.items() if not why.startswith(REPLACED))

# The functions this issue brought back to the book's text: they must stay identical.
BOOK_AS_PRINTED = (
    "weights.load_weights_into_gpt",
    "model.LayerNorm.forward",
    "model.GELU.forward",
    "model.GPTModel.forward",
    "training.calc_loss_batch",
    "training.generate_and_print_sample",
    "spam_data.random_split",
    "spam_data.SpamDataset.__getitem__",
    "spam_data.SpamDataset._longest_encoded_length",
    "lora.LoRALayer.forward",
)


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


def test_every_non_book_line_is_marked(found):
    unmarked = sorted(key for key, diff in found.items() if unmarked_lines(diff))
    assert unmarked == UNMARKED, (
        "non-book lines without a `# kit:` mark (mark them, or write the book's code): "
        + "\n\n".join(found[key] for key in unmarked if key not in UNMARKED)
        + f"\nlisted as unmarked but now marked: {sorted(set(UNMARKED) - set(unmarked))}"
    )


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
