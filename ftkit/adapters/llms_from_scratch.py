"""Adapter for the book's official package, `llms-from-scratch` on PyPI (the `book` extra).

`pytest --impl ftkit.adapters.llms_from_scratch` (or `ftkit check --impl ...`) runs
the kit's suite against the book's own code: proof that the tests check behaviour,
not our code's quirks. The adapter only maps names — the kit's names on the left,
the package's functions on the right; where the book reuses a name for another
stage (ch. 6's `calc_loss_batch` is the classification loss), the kit's distinct
name points at it. Names the package lacks (the kit's loaders, validation
helpers, the judge's score parser, …) are simply absent and show as "not provided".

This is the worked example of the adapter protocol in README.md: a module that
exposes the kit's public names, nothing more.
"""

from __future__ import annotations

from llms_from_scratch.appendix_e import LinearWithLoRA, LoRALayer, replace_linear_with_lora
from llms_from_scratch.ch03 import MultiHeadAttention
from llms_from_scratch.ch04 import (
    GELU,
    FeedForward,
    GPTModel,
    LayerNorm,
    TransformerBlock,
    generate_text_simple,
)
from llms_from_scratch.ch05 import (
    assign,
    calc_loss_batch,
    calc_loss_loader,
    evaluate_model,
    generate,
    generate_and_print_sample,
    load_weights_into_gpt,
    plot_losses,
    text_to_token_ids,
    token_ids_to_text,
    train_model_simple,
)
from llms_from_scratch.ch06 import (
    SpamDataset,
    calc_accuracy_loader,
    classify_review,
    create_balanced_dataset,
    plot_values,
    random_split,
    train_classifier_simple,
)
from llms_from_scratch.ch06 import calc_loss_batch as calc_loss_batch_classifier
from llms_from_scratch.ch06 import calc_loss_loader as calc_loss_loader_classifier
from llms_from_scratch.ch06 import evaluate_model as evaluate_model_classifier
from llms_from_scratch.ch07 import (
    InstructionDataset,
    custom_collate_draft_1,
    custom_collate_draft_2,
    custom_collate_fn,
    format_input,
    generate_model_scores,
    query_model,
)

__all__ = [
    "assign",
    "GELU",
    "FeedForward",
    "GPTModel",
    "InstructionDataset",
    "LayerNorm",
    "LinearWithLoRA",
    "LoRALayer",
    "MultiHeadAttention",
    "SpamDataset",
    "TransformerBlock",
    "calc_accuracy_loader",
    "calc_loss_batch",
    "calc_loss_batch_classifier",
    "calc_loss_loader",
    "calc_loss_loader_classifier",
    "classify_review",
    "create_balanced_dataset",
    "custom_collate_draft_1",
    "custom_collate_draft_2",
    "custom_collate_fn",
    "evaluate_model",
    "evaluate_model_classifier",
    "format_input",
    "generate",
    "generate_and_print_sample",
    "generate_model_scores",
    "generate_text_simple",
    "load_weights_into_gpt",
    "plot_losses",
    "plot_values",
    "query_model",
    "random_split",
    "replace_linear_with_lora",
    "text_to_token_ids",
    "token_ids_to_text",
    "train_classifier_simple",
    "train_model_simple",
]

# The book's code has none of the kit's extras (named errors on bad input, resume hooks):
# tests marked `beyond_book` are reported "not provided" for it instead of failing.
BOOK_CODE_ONLY = True
