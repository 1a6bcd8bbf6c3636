"""`ftkit doctor`: versions, the devices torch sees, and a numeric check on each device."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "doctor",
        help="check this machine: versions, devices, and that each device computes as the CPU",
        description="Print the versions of Python, torch, tiktoken and the optional libraries "
        "(TensorFlow, transformers, the book's package), the devices torch sees with their "
        "bfloat16 support, and run the same seeded tiny GPT forward + backward on the CPU and "
        "on each CUDA/MPS device, comparing loss and gradients. Known traps (MPS with "
        "torch < 2.9, non-deterministic kernels) are named with what to do. Exit code 1 when "
        "a device check fails.",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ftkit.doctor import diagnose

    return diagnose()
