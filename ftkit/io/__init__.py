"""The kit's I/O: downloads and cache, atomic files, the offline tokenizer, GPT-2 checkpoints."""
