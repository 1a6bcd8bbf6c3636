"""The book's end-to-end recipes as plain functions: data -> model -> training -> evaluation.

`ftkit.recipes.instruct` is chapter 7 (instruction fine-tuning, its exercises 7.1-7.4,
test-set responses and LLM-judge scores). The command line (`ftkit instruct ...`) is a
thin layer over these functions.
"""
