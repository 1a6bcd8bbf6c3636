"""The book's end-to-end recipes as plain functions: setup -> train -> save.

`classify` is chapter 6 (spam classifier, exercises 6.1-6.3), `instruct` chapter 7
(instruction fine-tuning, exercises 7.1-7.4), `respond` its test-set responses (§7.7)
and LLM-judge scores (§7.8). `config` declares each recipe's settings once (CLI flags
and resume keys derive from it, via `settings`); `runtime` holds what both recipes
share (device, model, resume, files). The command line is a thin layer over these.
"""
