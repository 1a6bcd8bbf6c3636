"""Each choice list and constant of the kit, defined once (this module imports no torch: `ftkit --help` stays quick).

The CLI flags (`ftkit.recipes.config`), the engine (`ftkit.engine.precision`,
`ftkit.engine.batched`) and the recipes read them from here; the book's own constants
stay in `reference/` (`reference.collate.IGNORE_INDEX`, `reference.judge.DEFAULT_URL`,
`reference.classifier.TOKEN_POSITIONS`) and the kit names them here.
"""

from __future__ import annotations

DEVICES = ("auto", "cpu", "cuda", "mps")  # where a run computes ("auto": cuda, mps, cpu)
PRECISIONS = ("auto", "bf16", "fp32")  # the fast path's number format; --exact is fp32
TOKEN_POSITIONS = ("last", "first")  # which token's logits classify (exercise 6.3: first)
STYLES = ("alpaca", "phi3")  # prompt styles (exercise 7.1: phi3)
TRAINABLE = ("last_block", "all", "head")  # what chapter 6 fine-tunes (exercise 6.2: all)
JUDGE_URL = "http://localhost:11434/api/chat"  # the book's Ollama chat endpoint (§7.8)
