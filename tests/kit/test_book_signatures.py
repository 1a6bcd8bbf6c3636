"""reference/ keeps the book's signatures: the book package's positional parameters, same names and order.

The kit may add options only as keyword-only parameters (the book's end-of-chapter
exercises: `style="phi3"`, `mask_instruction`, `token_position`, ...), so a learner
who writes the book's code calls and is called exactly as the book does.
"""

from __future__ import annotations

import importlib
import inspect
import os

import pytest

# (reference module, book package module, name)
BOOK_NAMES = [
    ("training", "ch05", "train_model_simple"),
    ("training", "ch05", "evaluate_model"),
    ("training", "ch05", "calc_loss_batch"),
    ("training", "ch05", "calc_loss_loader"),
    ("training", "ch05", "generate_and_print_sample"),
    ("training", "ch05", "plot_losses"),
    ("generation", "ch05", "generate"),
    ("generation", "ch05", "text_to_token_ids"),
    ("generation", "ch05", "token_ids_to_text"),
    ("weights", "ch05", "load_weights_into_gpt"),
    ("weights", "ch05", "assign"),
    ("spam_data", "ch06", "create_balanced_dataset"),
    ("spam_data", "ch06", "random_split"),
    ("spam_data", "ch06", "SpamDataset"),
    ("classifier", "ch06", "train_classifier_simple"),
    ("classifier", "ch06", "evaluate_model"),
    ("classifier", "ch06", "calc_loss_batch"),
    ("classifier", "ch06", "calc_loss_loader"),
    ("classifier", "ch06", "calc_accuracy_loader"),
    ("classifier", "ch06", "classify_review"),
    ("classifier", "ch06", "plot_values"),
    ("instruction_data", "ch07", "format_input"),
    ("instruction_data", "ch07", "InstructionDataset"),
    ("collate", "ch07", "custom_collate_draft_1"),
    ("collate", "ch07", "custom_collate_draft_2"),
    ("collate", "ch07", "custom_collate_fn"),
    ("judge", "ch07", "query_model"),
    ("judge", "ch07", "generate_model_scores"),
    ("lora", "appendix_e", "LoRALayer"),
    ("lora", "appendix_e", "LinearWithLoRA"),
    ("lora", "appendix_e", "replace_linear_with_lora"),
]


def book_module(short: str):
    try:
        return importlib.import_module(f"llms_from_scratch.{short}")
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("the book's package (llms-from-scratch, the `book` extra) is not installed")
        pytest.skip("the book's package is not installed: pip install -e '.[book]'")


def parameters(obj) -> list[inspect.Parameter]:
    target = obj.__init__ if inspect.isclass(obj) else obj
    params = list(inspect.signature(target).parameters.values())
    return params[1:] if inspect.isclass(obj) else params  # drop self


def positional(params: list[inspect.Parameter]) -> list[tuple[str, object]]:
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return [(p.name, p.default) for p in params if p.kind in kinds]


@pytest.mark.parametrize(("ref_module", "book", "name"), BOOK_NAMES)
def test_reference_positional_parameters_are_the_books(ref_module, book, name):
    ours = getattr(importlib.import_module(f"reference.{ref_module}"), name, None)
    assert ours is not None, f"reference/{ref_module}.py lacks the book's {name}"
    theirs = getattr(book_module(book), name)
    ours_params, book_params = parameters(ours), parameters(theirs)
    assert positional(ours_params) == positional(book_params), (
        f"reference/{ref_module}.py {name}: positional parameters "
        f"{positional(ours_params)} differ from the book's {positional(book_params)}"
    )
    extras = [p for p in ours_params if p.name not in {n for n, _ in positional(book_params)}]
    not_keyword = [p.name for p in extras if p.kind is not inspect.Parameter.KEYWORD_ONLY]
    assert not not_keyword, (
        f"reference/{ref_module}.py {name}: options beyond the book must be keyword-only: "
        f"{not_keyword}"
    )
