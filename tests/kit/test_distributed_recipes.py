"""Two CPU processes (gloo, `--nproc-per-node 2`) run the recipes as one process does (marker `slow`).

Every rank iterates the book's seeded loaders and computes its slice of each batch
(`ftkit.engine.distributed.Dist.micro_batches`), so a 2-process `--exact` run gives the
single-process losses (float reduction error: 1e-5 relative), its checkpoint resumes
with one process, and `respond` under 2 processes writes the file one process writes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ftkit.cli import main

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--model", "tiny", "--device", "cpu", "--no-progress", "--exact"]


def two_processes(*argv: str) -> None:
    """`ftkit ARGV --nproc-per-node 2` (the torchrun shortcut) on loopback gloo."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "GLOO_SOCKET_IFNAME": "lo",
        "OMP_NUM_THREADS": "1",
    }
    command = [sys.executable, "-m", "ftkit", *argv, "--nproc-per-node", "2"]
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]


def rel_close(got: list[float], want: list[float], what: str) -> None:
    assert len(got) == len(want) and got, (what, got, want)
    for a, b in zip(got, want, strict=True):
        assert abs(a - b) <= 1e-5 * abs(b), f"{what}: 2 processes {got} vs 1 process {want}"


def test_instruct_two_processes_equal_one_and_resume_with_one(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    data = ["--limit", "60"]
    assert main(["instruct", "train", *TINY, *data, "--epochs", "2", "--out", str(one)]) == 0
    two_processes("instruct", "train", *TINY, *data, "--epochs", "1", "--out", str(two))
    # ... and the second epoch in one process, from the 2-process checkpoint
    assert main(["instruct", "train", *TINY, *data, "--epochs", "2", "--out", str(two)]) == 0
    record = {d: json.loads(next(d.glob("*-sft.json")).read_text()) for d in (one, two)}
    for key in ("train_losses", "val_losses"):
        rel_close(record[two][key], record[one][key], key)

    assert main(["instruct", "respond", *TINY, "--batch-size", "2", "--out", str(one)]) == 0
    two_processes("instruct", "respond", *TINY, "--batch-size", "2", "--out", str(two))
    name = "instruction-data-with-response.json"
    assert (two / name).read_bytes() == (one / name).read_bytes()


def test_classify_two_processes_equal_one(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    flags = [*TINY, "--limit", "32", "--epochs", "1"]
    assert main(["classify", "train", *flags, "--out", str(one)]) == 0
    two_processes("classify", "train", *flags, "--out", str(two))
    history = {d: json.loads((d / "history.json").read_text())["history"] for d in (one, two)}
    for key in ("train_losses", "val_losses", "train_accs", "val_accs"):
        rel_close(history[two][key], history[one][key], key)
