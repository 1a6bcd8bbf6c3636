"""The book's code for chapters 4-7 and Appendix E, one module per stage, with the book's names.

Data becomes batches in `spam_data`, `instruction_data` and `collate`; batches
become logits in `model`; logits become losses in `training` (ch. 5) and
`classifier` (ch. 6); text comes back out through `generation` and `evaluation`,
and `judge` scores it. Lines beyond the book's listings are marked `# kit:`.
Everything else the kit does (downloads, resume, progress bars, the fast engine,
recipes, the checker) lives in `ftkit/`.
"""

# The order a reader meets these modules in the book (chapters 4-7, then Appendix E).
BOOK_ORDER = (
    "model",
    "generation",
    "training",
    "weights",
    "spam_data",
    "classifier",
    "instruction_data",
    "collate",
    "evaluation",
    "judge",
    "lora",
)
