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


def launch(argv: Sequence[str], nproc: int) -> int:
    """Start `python -m ftkit <argv>` on `nproc` processes with torch's own launcher (torchrun).

    `--nproc-per-node` is taken out of `argv`; the launcher picks a free loopback
    port (`--standalone`) and, when a process fails, stops the others and names it.
    """
    if nproc < 1:
        raise ValueError(f"--nproc-per-node {nproc}: start at least one process")
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
