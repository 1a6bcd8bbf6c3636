"""The multi-process flags and the torchrun shortcut, without importing torch (`ftkit --help` stays quick).

`ftkit classify train --nproc-per-node N ...` is `torchrun --nproc-per-node N -m ftkit
classify train ...`: `launch` starts torch's own launcher (`torch.distributed.run`),
which starts N copies of the command; each then joins the process group in
`ftkit.engine.distributed.session`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence

STRATEGIES = ("ddp", "fsdp")
BACKENDS = ("auto", "nccl", "gloo")
DEFAULT_TIMEOUT_S = 600.0  # long enough for rank 0 to write a 1558M checkpoint
LAUNCH_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


def per_rank_batch(batch_size: int, world: int, grad_accum: int = 1) -> int:
    """Each rank's share of the global batch (book: 8); a clear error when it does not split.

    With `grad_accum` K each rank runs its share in K micro-batches of
    batch_size / (world * K) examples (less memory, the same global batch).
    """
    if world > batch_size:
        raise ValueError(
            f"{world} processes for a batch of {batch_size}: each process needs at least one "
            f"example per step; use at most {batch_size} processes (--nproc-per-node)"
        )
    if batch_size % world:
        fits = [n for n in range(1, batch_size + 1) if batch_size % n == 0]
        raise ValueError(
            f"the global batch of {batch_size} does not split evenly over {world} processes "
            f"({batch_size}/{world} per process); use --nproc-per-node "
            f"{', '.join(map(str, fits))}, or a batch size that {world} divides (`batch_size=` "
            f"of the Python API; not the book's); --grad-accum K then splits each process's share into K micro-batches "
            "when it does not fit in memory"
        )
    share = batch_size // world
    if grad_accum < 1 or share % grad_accum:
        raise ValueError(
            f"--grad-accum {grad_accum}: each of the {world} processes takes {share} examples "
            f"per step, which {grad_accum} micro-batches do not split; use a divisor of {share}"
        )
    return share


def launched() -> bool:
    """Whether this process was started by torchrun (its environment names a rank)."""
    return all(name in os.environ for name in LAUNCH_ENV)


def add_flags(parser) -> None:
    """The multi-process flags of `ftkit classify train` and `ftkit instruct`."""
    parser.add_argument(
        "--nproc-per-node",
        type=int,
        default=None,
        metavar="N",
        help="train on N processes (GPUs) with torchrun: the same as "
        "`torchrun --nproc-per-node N -m ftkit ...`",
    )
    parser.add_argument(
        "--strategy",
        choices=STRATEGIES,
        default="ddp",
        help="several processes: ddp (a full model per GPU, default) or fsdp (parameters, "
        "gradients and optimizer state sharded over the GPUs)",
    )
    parser.add_argument(
        "--grad-accum",
        type=int,
        default=1,
        metavar="K",
        help="run each step's batch in K micro-batches (less memory, same global batch)",
    )
    parser.add_argument(
        "--backend", choices=BACKENDS, default="auto", help="auto: nccl on CUDA, gloo on CPU"
    )
    parser.add_argument(
        "--dist-timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        metavar="SECONDS",
        help="stop when another process does not answer within this time",
    )


def launch(
    argv: Sequence[str], nproc: int, *, batch_size: int | None = None, grad_accum: int = 1
) -> int:
    """Start `python -m ftkit <argv>` on `nproc` processes with torch's own launcher (torchrun).

    `--nproc-per-node` is taken out of `argv`; the launcher picks a free loopback
    port (`--standalone`) and, when a process fails, stops the others and names it.
    """
    if nproc < 1:
        raise ValueError(f"--nproc-per-node {nproc}: start at least one process")
    if batch_size is not None:  # say it once, before N processes load data to say it N times
        per_rank_batch(batch_size, nproc, grad_accum)
    rest, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc-per-node":
            skip = True
        elif not arg.startswith("--nproc-per-node="):
            rest.append(arg)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += [f"--nproc-per-node={nproc}", "-m", "ftkit", *rest]
    return subprocess.call(command)
