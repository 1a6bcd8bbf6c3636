"""Chapter 7's instruction fine-tuning recipe: `finetune` (setup -> train -> save) and `load_finetuned`.

`finetune` follows the book's §7.2-§7.6 code step by step (GPT-2 355M, AdamW lr 5e-5,
weight decay 0.1, 2 epochs, batch 8, eval every 5 steps over 5 batches, seed 123),
with the chapter's exercises as options: `style="phi3"` (7.1), `mask_instruction=True`
(7.2), `dataset="alpaca"` (7.3) and `lora_rank` (7.4). It checkpoints at the end of
each epoch and a rerun continues from the last checkpoint (`resume=False`, the CLI's
`--restart`, starts over) with the same losses an uninterrupted run gives. The test-set responses (§7.7) and their scores (§7.8)
are `ftkit.recipes.respond`.

Everything the recipe writes goes into one output folder (default `runs/instruct-<model>`):

- `<model>-sft.pth` (the book's file name, e.g. `gpt2-medium355M-sft.pth`) and
  `<model>-sft.json` beside it (model config, style, masking, data, losses);
- `<model>-sft-checkpoint.pth` (model, optimizer, RNG state, history, epoch);
- `<model>-sft-losses.png` (the loss plot);
- `instruction-data-with-response.json`, `scores.jsonl`, `scores-histogram.png`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Sampler

from ftkit.doctor import report_device
from ftkit.engine.backend import make_backend
from ftkit.engine.distributed import Dist, one_unless
from ftkit.engine.plots import plot_losses_png
from ftkit.engine.trainer import History
from ftkit.io.model_file import load_saved_model
from ftkit.presets import get_config
from ftkit.recipes.config import InstructConfig
from ftkit.recipes.runtime import (
    canonical_preset,
    check_out_dir,
    resume_state,
    run_dir,
    save_state_dict,
    start,
    train_epochs,
    write_json,
)
from ftkit.recipes.settings import configure, resume_keys, run_settings
from reference.model import GPTModel

DEFAULT_MODEL = InstructConfig.model
ALPACA_MAX_LENGTH = 512  # exercise 7.3: Alpaca's longer entries are truncated to 512 tokens
RESPONSES_FILE = "instruction-data-with-response.json"
SCORES_FILE = "scores.jsonl"
HISTOGRAM_FILE = "scores-histogram.png"

# Settings that must match between a checkpoint and the run resuming from it.
RESUME_KEYS = resume_keys(InstructConfig)


def model_file_name(preset: str) -> str:
    """The book's file name for the fine-tuned model: `gpt2-medium355M-sft.pth` (§7.6)."""
    return f"{re.sub(r'[ ()]', '', canonical_preset(preset))}-sft.pth"


def output_paths(out_dir: str | os.PathLike, preset: str) -> dict[str, Path]:
    """Where each of the recipe's files lives inside `out_dir`."""
    out = Path(out_dir)
    model_path = out / model_file_name(preset)
    stem = model_path.stem
    return {
        "model": model_path,
        "config": out / f"{stem}.json",
        "checkpoint": out / f"{stem}-checkpoint.pth",
        "plot": out / f"{stem}-losses.png",
        "responses": out / RESPONSES_FILE,
        "scores": out / SCORES_FILE,
        "histogram": out / HISTOGRAM_FILE,
    }


# ------------------------------------------------------------------ data (§7.2-7.4)


def load_dataset(dataset: str = "instruction", limit: int | None = None) -> list[dict]:
    """The book's 1,100 entries (`instruction`), Alpaca 52k (`alpaca`, exercise 7.3) or a JSON file.

    `limit` keeps the first N entries (before the train/test/val split), for quick runs.
    """
    from ftkit.data.instruction import load_instruction_data

    if dataset == "instruction":
        data = load_instruction_data()
    elif dataset == "alpaca":
        from ftkit.io.assets import fetch

        data = load_instruction_data(fetch("alpaca-data"))
    else:
        path = Path(dataset)
        if not path.is_file():
            raise FileNotFoundError(
                f"--dataset {dataset!r}: no such file; give 'instruction', 'alpaca' or the "
                "path of a JSON list of {instruction, input, output} entries"
            )
        data = load_instruction_data(path)
    if limit is not None:
        if limit < 3:
            raise ValueError(f"limit={limit}: need at least 3 entries (train, test and val)")
        data = data[:limit]
    return data


def default_max_length(dataset: str, cfg: dict) -> int:
    """Truncation length: the model's context for the book's data (§7.3), else 512 (exercise 7.3).

    Alpaca-format files (Alpaca itself or a path) get exercise 7.3's 512 tokens: their
    long entries would otherwise make a batch of 8 too big for most GPUs.
    """
    if dataset == "instruction":
        return cfg["context_length"]
    return min(ALPACA_MAX_LENGTH, cfg["context_length"])


def length_bucketed_batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Batches of similar-length entries, in a seeded random order (less padding than the book's).

    Like the book's shuffled loader with drop_last, a random `len % batch_size` entries
    sit out each epoch; the rest are sorted by length, cut into batches, and the
    batches shuffled. A batch is padded to its longest entry, so grouping similar
    lengths saves most of the padding (useful for exercise 7.3's Alpaca data).
    """
    order = torch.randperm(len(lengths)).tolist()  # global RNG: reproducible under the seed
    order = order[: len(order) - len(order) % batch_size]
    order.sort(key=lengths.__getitem__)
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    return [batches[b] for b in torch.randperm(len(batches)).tolist()]


def _token_ids(item: Any) -> list[int]:
    # A masked item (exercise 7.2) is a (prompt_length, token_ids) pair.
    if isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], list | tuple):
        return list(item[1])
    return list(item)


class _BucketBatchSampler(Sampler):
    """A fresh `length_bucketed_batches` each epoch."""

    def __init__(self, dataset, batch_size: int):
        self.lengths = [len(_token_ids(dataset[i])) for i in range(len(dataset))]
        self.batch_size = batch_size

    def __iter__(self):
        return iter(length_bucketed_batches(self.lengths, self.batch_size))

    def __len__(self) -> int:
        return len(self.lengths) // self.batch_size


def bucket_by_length(loader: DataLoader) -> DataLoader:
    """The book's train loader (§7.4) with batches of similar-length entries instead of shuffled ones."""
    batches = _BucketBatchSampler(loader.dataset, loader.batch_size)
    return DataLoader(loader.dataset, batch_sampler=batches, collate_fn=loader.collate_fn)


# ------------------------------------------------------------------ the recipe


def add_lora(model: nn.Module, rank: int, alpha: float, say: Callable[[str], None]) -> None:
    """Freeze the model, then add LoRA layers, printing the book's counts (Appendix E, exercise 7.4)."""
    from reference.lora import count_trainable_parameters, freeze_model, replace_linear_with_lora

    say(f"Total trainable parameters before: {count_trainable_parameters(model):,}")
    freeze_model(model)
    say(f"Total trainable parameters after: {count_trainable_parameters(model):,}")
    replace_linear_with_lora(model, rank=rank, alpha=alpha)
    say(f"Total trainable LoRA parameters: {count_trainable_parameters(model):,}")


def finetune(
    out_dir: str | os.PathLike | None = None,
    *,
    config: InstructConfig | None = None,
    say: Callable[[str], None] = print,
    dist: Dist | None = None,
    **overrides: Any,
) -> dict:
    """Instruction-fine-tune GPT-2 as the book's chapter 7 (§7.2-§7.6); returns paths, losses, settings.

    `config` (default: the book's settings) with keyword `overrides` (`epochs=1`, ...).
    `dist` makes this one rank of a data-parallel run (`ftkit.engine.distributed`):
    rank 0 writes every file; the other ranks return after training (no "plot" key).
    """
    from ftkit.data.instruction import create_instruction_loaders
    from ftkit.io.tokenizer import get_tokenizer
    from reference.instruction_data import format_input, split_data

    c = configure(InstructConfig, config, overrides, out_dir)
    if c.lora_rank is not None and c.lora_rank < 1:
        raise ValueError(f"lora_rank={c.lora_rank}: a LoRA rank is a positive integer")

    # --- setup: settings, data (§7.2-7.4), device
    preset = canonical_preset(c.model)
    cfg = get_config(preset)
    max_length = c.allowed_max_length or default_max_length(c.dataset, cfg)
    out = check_out_dir(run_dir("instruct", preset, c.out))  # before any work
    paths = output_paths(out, preset)
    dist = one_unless(dist, c.device)
    dev = dist.device
    backend = make_backend(dev, exact=c.exact, precision=c.precision)
    settings = run_settings(
        c,
        preset=preset,
        backend=backend,
        lora_alpha=c.lora_alpha if c.lora_rank else None,
        allowed_max_length=max_length,
    )
    # Before any file is written: a refused resume (other settings) changes nothing.
    state = resume_state(paths["checkpoint"], settings, RESUME_KEYS, resume=c.resume, say=say)
    report_device(dev, say)  # one line when this device computes wrong
    say(backend.describe())

    data = load_dataset(c.dataset, c.limit)
    train_data, test_data, val_data = split_data(data)
    say(f"Training set length: {len(train_data)}")
    say(f"Validation set length: {len(val_data)}")
    say(f"Test set length: {len(test_data)}")
    if not val_data:
        raise ValueError(f"{len(data)} entries leave no validation entries; raise --limit")
    if len(train_data) < c.batch_size:
        raise ValueError(
            f"only {len(train_data)} training entries for batch size {c.batch_size}: the train "
            "loader drops the last partial batch, so nothing would be trained; raise --limit"
        )
    tokenizer = get_tokenizer()
    train_loader, val_loader, _ = create_instruction_loaders(
        train_data,
        val_data,
        test_data,
        tokenizer,
        batch_size=c.batch_size,
        allowed_max_length=max_length,
        device=dev,
        style=c.style,
        mask_instruction=c.mask_instruction,
        seed=c.seed,  # the book seeds before building the loaders (§7.4)
    )
    if c.sort_by_length:
        train_loader = bucket_by_length(train_loader)

    # --- model (§7.5): GPT-2 (LoRA for exercise 7.4), or the last checkpoint
    run = start(preset, state, models_dir=c.models_dir)
    if not run.pretrained and run.checkpoint is None:
        say(
            "WARNING: model 'tiny' is randomly initialised, NOT GPT-2: no pretrained "
            "weights, so its responses will be gibberish. Use it for quick checks only."
        )
    settings["pretrained"] = run.pretrained
    gpt = run.model
    if c.lora_rank:
        add_lora(gpt, c.lora_rank, c.lora_alpha, say)
    gpt = dist.wrap(backend.prepare(gpt))  # fused on the fast path; wrapped/sharded over ranks
    optimizer = backend.optimizer(gpt, lr=c.lr, weight_decay=c.weight_decay)
    history = run.restore(optimizer, gpt, dist)
    if history is None:
        calc_loss_loader = backend.calc_loss_loader()
        gpt.eval()
        torch.manual_seed(c.seed)
        with torch.no_grad(), backend.autocast():
            train_loss = calc_loss_loader(train_loader, gpt, dev, num_batches=5)
            val_loss = calc_loss_loader(val_loader, gpt, dev, num_batches=5)
        say(f"Training loss: {train_loss}")
        say(f"Validation loss: {val_loss}")
        torch.manual_seed(c.seed)  # the book reseeds before training (§7.6)
        history = History()

    # --- train (§7.6)
    steps = backend.next_token_steps(
        tokenizer, format_input(val_data[0], style=c.style), mean=dist.mean, plain=dist.plain
    )
    gpt, history = train_epochs(
        gpt,
        (train_loader, val_loader),
        optimizer,
        dev,
        steps=steps,
        config=c,
        history=history,
        checkpoint=paths["checkpoint"],
        settings=settings,
        say=say,
        dist=dist,
        backend=backend,
    )
    if gpt is None:  # a rank after 0 of a data-parallel run
        return {"paths": paths, "history": history.to_dict(), "settings": settings}

    # --- save (§7.6): the model as GPTModel's layout, its record, the loss plot
    if c.lora_rank:
        from reference.lora import merge_lora_weights

        merge_lora_weights(gpt)  # the saved model gets GPTModel's plain layout
    save_state_dict(gpt, paths["model"])
    record = {
        **settings,
        "epochs": history.epochs_done,
        "config": cfg,
        "train_losses": history.train_losses,
        "val_losses": history.val_losses,
        "tokens_seen": history.track_tokens_seen,
        "merged_lora": bool(c.lora_rank),
    }
    write_json(record, paths["config"])
    plot = plot_losses_png(history, paths["plot"])
    say(f"Model saved as {paths['model']}")
    return {
        "paths": paths,
        "history": history.to_dict(),
        "settings": settings,
        "plot": plot,
        "test_data": test_data,
    }


def load_finetuned(
    out_dir: str | os.PathLike, preset: str, device: torch.device
) -> tuple[nn.Module, dict]:
    """The saved fine-tuned model and its JSON record (the settings it was trained with)."""
    paths = output_paths(out_dir, preset)
    if not paths["model"].exists() or not paths["config"].exists():
        raise FileNotFoundError(
            f"no fine-tuned model in {Path(out_dir)} (looked for {paths['model'].name} and "
            f"{paths['config'].name}); run `ftkit instruct train` first"
        )
    record = json.loads(paths["config"].read_text(encoding="utf-8"))
    gpt = load_saved_model(
        lambda: GPTModel(record["config"]),
        paths["model"],
        fix="train again with `ftkit instruct train` into this folder (--restart)",
        config_file=paths["config"],
    )
    gpt.to(device).eval()
    return gpt, record
