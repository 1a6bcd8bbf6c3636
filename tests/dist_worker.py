"""One rank of a tiny data-parallel run, for tests/kit/test_distributed.py (started by torchrun).

`python -m torch.distributed.run --standalone --nproc-per-node 2 tests/dist_worker.py
SCENARIO OUT_DIR` trains a tiny GPT on synthetic next-token data with the kit's
`fit` under `ftkit.engine.distributed.session`, then rank 0 writes `OUT_DIR/result.json`:

- `both`: for DDP (2 micro-batches per step) then FSDP, in one process group: per-step losses of the global batch; the same steps in one process on
  the concatenation of both ranks' batches (the same global batches); the history of
  an uninterrupted 2-epoch run and of a run stopped after epoch 1 and resumed from its
  checkpoint; how many files each rank saved;
- `teardown`: a DDP epoch and an FSDP epoch; each rank writes the names of its threads after the session;
- `kill`: with DIE_RANK=1, rank 1 kills itself (SIGKILL) in its second step; with
  HANG_RANK=1 it stops answering there; the test checks the run stops.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from ftkit.engine.backend import make_backend
from ftkit.engine.distributed import Dist, session
from ftkit.engine.trainer import fit, load_checkpoint
from ftkit.presets import get_config
from reference.model import GPTModel

CFG = get_config("tiny", vocab_size=97, context_length=16)
EXAMPLES, LENGTH, LR = 24, 12, 1e-3


def data() -> torch.utils.data.TensorDataset:
    """Fixed-length token rows; about a third of the targets ignored (-100), unevenly per row."""
    g = torch.Generator().manual_seed(7)
    inputs = torch.randint(0, CFG["vocab_size"], (EXAMPLES, LENGTH), generator=g)
    targets = torch.roll(inputs, -1, dims=1)
    targets[torch.rand(EXAMPLES, LENGTH, generator=g) < 0.35] = -100
    return torch.utils.data.TensorDataset(inputs, targets)


def model() -> GPTModel:
    torch.manual_seed(0)  # the same initial weights on every rank and in the reference
    return GPTModel(CFG)


def train(dist: Dist, out: Path, epochs: int, resume: bool, record: list | None = None):
    """A fresh (or resumed) model trained with `fit` to `epochs`; returns (history, batches)."""
    from ftkit.io.tokenizer import get_tokenizer

    loader = torch.utils.data.DataLoader(data(), batch_size=8, shuffle=True, drop_last=True)
    train_loader = loader  # every rank: the same seeded batches; each computes its slice
    val_loader = torch.utils.data.DataLoader(data(), batch_size=8)
    gpt = dist.wrap(model().to(dist.device))
    optimizer = torch.optim.AdamW(gpt.parameters(), lr=LR, weight_decay=0.1)
    history = None
    checkpoint = out / "checkpoint.pth"
    out.mkdir(parents=True, exist_ok=True)
    if resume:
        from ftkit.engine.trainer import restore_checkpoint

        history = restore_checkpoint(load_checkpoint(checkpoint, {}, ()), gpt, optimizer, dist)
    # the book's code in float32; FAST=1: the fast path's loss (the head fused with it), fp32
    backend = make_backend(dist.device, exact=os.environ.get("FAST") != "1", precision="fp32")
    steps = backend.next_token_steps(get_tokenizer(), "a", mean=dist.mean, plain=dist.plain)
    batches: list = []
    if record is not None:
        weighted = steps.calc_loss_batch

        current: list = []  # this step's micro-batches so far: (inputs, targets, loss, count)

        def calc_loss_batch(inputs, targets, model, device):
            loss = weighted(inputs, targets, model, device)
            current.append((inputs, targets, loss.item(), int((targets != -100).sum())))
            if len(current) < dist.grad_accum:
                return loss
            batches.append(
                (
                    torch.cat([i for i, *_ in current]).tolist(),
                    torch.cat([t for _, t, *_ in current]).tolist(),
                )
            )
            # the global batch's loss: the counted-target mean over all ranks' micro-batches
            loss_sum, total = dist.all_sum(
                [sum(value * count for *_, value, count in current), sum(c for *_, c in current)]
            )
            record.append(loss_sum / total)
            current.clear()
            if os.environ.get("DIE_RANK") == str(dist.rank) and len(batches) == 2:
                os.kill(os.getpid(), signal.SIGKILL)
            if os.environ.get("HANG_RANK") == str(dist.rank) and len(batches) == 2:
                time.sleep(120)  # alive but silent: the others' collectives time out
            return loss

        steps = type(steps)(calc_loss_batch, steps.evaluate_model, steps.after_epoch)
    history = fit(
        gpt,
        train_loader,
        val_loader,
        optimizer,
        dist.device,
        steps=steps,
        num_epochs=epochs,
        eval_freq=2,
        eval_iter=1,
        history=history,
        checkpoint=checkpoint,
        progress=False,
        dist=dist,
    )
    return history, batches


def reference_losses(batches_by_rank: list[list]) -> list[float]:
    """The same steps in one process: global batch k = rank 0's batch k, then rank 1's, ..."""
    from reference.training import calc_loss_batch

    gpt = model()
    optimizer = torch.optim.AdamW(gpt.parameters(), lr=LR, weight_decay=0.1)
    losses = []
    for per_rank in zip(*batches_by_rank, strict=True):
        inputs = torch.cat([torch.tensor(i) for i, _ in per_rank])
        targets = torch.cat([torch.tensor(t) for _, t in per_rank])
        optimizer.zero_grad()
        loss = calc_loss_batch(inputs, targets, gpt, "cpu")
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def check(dist: Dist, out: Path) -> dict | None:
    """Train, stop and resume with `dist`'s strategy; rank 0 returns what the test compares."""
    saves.clear()
    losses: list[float] = []
    full, batches = train(dist, out / "full", 2, False, losses)
    train(dist, out / "stopped", 1, False)  # "interrupted" after epoch 1 ...
    resumed, _ = train(dist, out / "stopped", 2, True)  # ... and run again
    everyone = dist.gather({"batches": batches, "saves": len(saves)})
    if not dist.is_main:
        return None
    return {
        "losses": losses,
        "reference": reference_losses([e["batches"] for e in everyone]),
        "full": full.to_dict(),
        "resumed": resumed.to_dict(),
        "saves": [e["saves"] for e in everyone],
        "steps_per_rank": len(batches),
        "rows_per_rank": len(batches[0][0]),
    }


saves: list[int] = []


def native_threads() -> list[str]:
    """The names of this process's threads (Linux), torch's C++ ones included (`pt_gloo_runloop`)."""
    return sorted((task / "comm").read_text().strip() for task in Path("/proc/self/task").iterdir())


def main(scenario: str, out: Path) -> None:
    if scenario == "teardown":  # a DDP and an FSDP epoch; which threads outlive the session?
        with session("cpu", timeout_s=float(os.environ.get("DIST_TIMEOUT", "20"))) as dist:
            train(dist, out / "ddp", 1, False)
            train(replace(dist, strategy="fsdp"), out / "fsdp", 1, False)
            rank = dist.rank
        (out / f"threads-{rank}.json").write_text(json.dumps(native_threads()))
        return
    torch.set_num_threads(1)
    real_save = torch.save
    torch.save = lambda *a, **k: (saves.append(1), real_save(*a, **k))[1]
    timeout = float(os.environ.get("DIST_TIMEOUT", "20"))
    with session("cpu", timeout_s=timeout) as dist:
        if scenario == "kill":
            train(dist, out / "full", 2, False, [])
            return
        if scenario == "fast":  # DDP on the fast path: the fused head+loss, never the logits
            from ftkit.engine import fused_loss

            def no_logits(*_args):
                raise AssertionError("the fast path computed whole logits under DDP")

            fused_loss.loss_of_logits = no_logits
            results = {"ddp": check(replace(dist, grad_accum=2), out / "ddp")}
            if dist.is_main:
                (out / "result.json").write_text(json.dumps(results))
            return
        # One process group, both strategies: DDP with 2 micro-batches per step, FSDP without.
        results = {
            "ddp": check(replace(dist, grad_accum=2), out / "ddp"),
            "fsdp": check(replace(dist, strategy="fsdp"), out / "fsdp"),
        }
        if dist.is_main:
            (out / "result.json").write_text(json.dumps(results))


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
