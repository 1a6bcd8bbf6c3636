"""The reference implementation: the book's chapters 6 and 7 as small modules, one per stage.

Data becomes batches in `instruction_data`, `spam_data` and `collate`; batches
become logits in `model`; logits become losses and checkpoints in `training`
and `classifier`; text comes back out through `generation` and `evaluation`.
"""
