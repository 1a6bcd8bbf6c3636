"""Data-parallel training (`ftkit.engine.distributed`): two CPU ranks with gloo, started by torchrun.

The 2-rank runs (tests/dist_worker.py) compare each step's global-batch loss with one
process stepping on the concatenation of both ranks' batches (the same global
batches), resume from a checkpoint, and count who wrote files; one rank killed
mid-run stops the run. The rest checks the errors and the shortcut without processes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ftkit.engine import distributed
from ftkit.engine.distributed import Dist, backend_for, per_rank_batch, session
from ftkit.engine.trainer import Steps, fit

ROOT = Path(__file__).resolve().parents[2]
WORKER = ROOT / "tests" / "dist_worker.py"


def torchrun(scenario: str, out: Path, timeout: float, **env: str) -> subprocess.CompletedProcess:
    """`torchrun --standalone --nproc-per-node 2 tests/dist_worker.py SCENARIO OUT` on loopback."""
    environ = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "GLOO_SOCKET_IFNAME": "lo",  # loopback only
        "OMP_NUM_THREADS": "1",
        **env,
    }
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc-per-node=2", str(WORKER), scenario, str(out)]
    return subprocess.run(
        command, env=environ, capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory) -> tuple[dict, str]:
    """One 2-rank run of the worker (DDP, then FSDP): its result.json and its stdout."""
    out = tmp_path_factory.mktemp("two-ranks")
    run = torchrun("both", out, timeout=180)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return json.loads((out / "result.json").read_text()), run.stdout


@pytest.mark.slow  # one 2-process gloo run for these three tests (~18 s on 2 cores)
@pytest.mark.parametrize(("strategy", "rel"), [("ddp", 1e-5), ("fsdp", 1e-4)])
def test_two_ranks_follow_one_process_on_the_same_global_batches(two_ranks, strategy, rel):
    result = two_ranks[0][strategy]
    # 24 examples, global batch 8: 3 steps an epoch, 4 examples per rank per step
    assert (result["steps_per_rank"], result["rows_per_rank"]) == (6, 4)
    assert result["losses"] == pytest.approx(result["reference"], rel=rel)


@pytest.mark.slow  # one 2-process gloo run for these three tests (~18 s on 2 cores)
@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_a_run_stopped_after_an_epoch_resumes_with_identical_losses(two_ranks, strategy):
    result = two_ranks[0][strategy]
    assert result["resumed"] == result["full"]
    assert result["full"]["epochs_done"] == 2
    assert result["full"]["examples_seen"] == 48  # global counts: both ranks' examples


@pytest.mark.slow  # one 2-process gloo run for these three tests (~18 s on 2 cores)
def test_rank_zero_alone_writes_and_prints(two_ranks):
    result, stdout = two_ranks
    # checkpoints of the 2-epoch run (2), of the stopped run (1) and of the resumed run (1)
    assert result["ddp"]["saves"] == [4, 0]
    assert result["fsdp"]["saves"] == [4, 0]
    # the book's first log line once per fresh run (2 per strategy), never twice per run
    assert stdout.count("Ep 1 (Step 000000)") == 4


@pytest.mark.slow  # two gloo processes, one killed, and the survivor's timeout
def test_a_killed_rank_stops_the_run_with_a_message(tmp_path):
    started = time.monotonic()
    run = torchrun("kill", tmp_path, timeout=90, DIE_RANK="1", DIST_TIMEOUT="20")
    elapsed = time.monotonic() - started
    assert run.returncode != 0
    assert elapsed < 60
    report = run.stdout + run.stderr
    assert "Root Cause" in report and "rank      : 1" in report  # torchrun names the rank


@pytest.mark.slow
def test_ddp_on_the_fast_path_fuses_the_head_and_follows_one_process(tmp_path):
    run = torchrun("fast", tmp_path, timeout=180, FAST="1")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    result = json.loads((tmp_path / "result.json").read_text())["ddp"]
    assert len(result["losses"]) == len(result["reference"]) > 0
    for got, want in zip(result["losses"], result["reference"], strict=True):
        assert got == pytest.approx(want, rel=1e-5)


@pytest.mark.slow
def test_a_silent_rank_makes_the_others_time_out_with_a_message(tmp_path):
    run = torchrun("kill", tmp_path, timeout=90, HANG_RANK="1", DIST_TIMEOUT="3")
    assert run.returncode != 0
    # DDP reduces the gradients inside backward: the raw gloo timeout is said as the kit says it
    assert "rank 0: all_reduce of the gradients failed" in run.stderr
    assert "did not answer within 3 s (--dist-timeout)" in run.stderr


@pytest.mark.slow  # two gloo processes, a DDP and an FSDP epoch
def test_the_session_leaves_no_gloo_thread_behind(tmp_path):
    """After the session, gloo's C++ threads are gone: none is left to the interpreter's exit.

    A process group that outlives `destroy_process_group` (something still holds it) keeps
    its worker threads until the interpreter finalizes; a worker that then drops the last
    reference to a finished collective's tensors needs the GIL, and the process aborts
    ("terminate called without an active exception"), now and then, under load.
    """
    run = torchrun("teardown", tmp_path, timeout=180)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    for rank in (0, 1):
        threads = json.loads((tmp_path / f"threads-{rank}.json").read_text())
        assert not [name for name in threads if "gloo" in name], (rank, threads)


# ------------------------------------------------------------------ without processes


def test_batch_split_errors_say_what_to_do():
    assert per_rank_batch(8, 2) == 4
    assert per_rank_batch(8, 2, grad_accum=2) == 4
    with pytest.raises(ValueError, match="use at most 8 processes"):
        per_rank_batch(8, 16)
    with pytest.raises(
        ValueError, match=r"does not split evenly over 3 .*1, 2, 4, 8.*--grad-accum"
    ):
        per_rank_batch(8, 3)
    with pytest.raises(ValueError, match="--grad-accum 3"):
        per_rank_batch(8, 2, grad_accum=3)


def test_a_backend_the_device_lacks_is_a_clear_error():
    assert backend_for(torch.device("cpu")) == "gloo"
    assert backend_for(torch.device("cuda", 0)) == "nccl"
    with pytest.raises(ValueError, match="nccl needs CUDA"):
        backend_for(torch.device("cpu"), "nccl")
    with pytest.raises(ValueError, match="no backend for Apple's MPS"):
        backend_for(torch.device("mps"))


def test_outside_torchrun_the_session_is_one_process(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    with session("cpu") as dist:
        assert (dist.world, dist.grad_accum, dist.grouped, dist.device.type) == (1, 1, False, "cpu")
    with session("cpu", grad_accum=2) as dist:
        assert (dist.world, dist.grad_accum, dist.is_main) == (1, 2, True)
    with pytest.raises(ValueError, match="torchrun"), session("cpu", strategy="fsdp"):
        pass


def test_gradient_accumulation_gives_the_whole_batch_step():
    """One process, 2 micro-batches of 4 padded rows: the same losses as whole batches of 8."""
    from ftkit.presets import get_config
    from reference.model import GPTModel
    from reference.training import calc_loss_batch, evaluate_model

    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(1)
    inputs = torch.randint(0, 50, (16, 6), generator=g)
    targets = torch.roll(inputs, -1, dims=1)
    targets[torch.rand(16, 6, generator=g) < 0.4] = -100  # uneven counts per micro-batch
    data = torch.utils.data.TensorDataset(inputs, targets)

    def run(dist):
        torch.manual_seed(0)
        model = GPTModel(get_config("tiny", vocab_size=50, context_length=8))
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        loader = torch.utils.data.DataLoader(data, batch_size=8)
        pieces = []  # (loss, counted targets) of each micro-batch

        def step(i, t, m, d):
            loss = calc_loss_batch(i, t, m, d)
            pieces.append((loss.item(), int((t != -100).sum())))
            return loss

        steps = Steps(step, evaluate_model, lambda *a: None)
        fit(model, loader, loader, optimizer, "cpu", steps=steps, num_epochs=2, eval_freq=9,
            eval_iter=1, progress=False, say=lambda _: None, dist=dist)  # fmt: skip
        k = dist.grad_accum  # each step's loss: the counted-target mean over its micro-batches
        steps_ = [pieces[i : i + k] for i in range(0, len(pieces), k)]
        return [sum(loss * c for loss, c in p) / sum(c for _, c in p) for p in steps_]

    assert run(Dist(grad_accum=2)) == pytest.approx(run(Dist()), rel=1e-5)


def test_full_state_optimizer_keys_round_trip():
    by_name = {
        "state": {"a.weight": {"step": 1}, "b.bias": {"step": 2}},
        "param_groups": [{"lr": 1.0, "params": ["a.weight", "frozen", "b.bias"]}],
    }
    by_index = distributed._optim_by_index(by_name)
    assert by_index == {
        "state": {0: {"step": 1}, 2: {"step": 2}},
        "param_groups": [{"lr": 1.0, "params": [0, 1, 2]}],
    }
    assert distributed._optim_by_name(by_index, ["a.weight", "frozen", "b.bias"]) == by_name


def test_nproc_per_node_starts_torchrun_with_the_same_command(monkeypatch):
    from ftkit.cli import main
    from ftkit.engine import launch

    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    calls = []
    monkeypatch.setattr(launch.subprocess, "call", lambda command: calls.append(command) or 0)
    argv = ["classify", "train", "--model", "tiny", "--nproc-per-node", "2", "--strategy", "fsdp"]
    assert main(argv) == 0
    assert calls == [
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
        + ["-m", "ftkit", "classify", "train", "--model", "tiny", "--strategy", "fsdp"]
    ]


def test_nproc_per_node_that_cannot_split_the_batch_is_refused_before_starting(
    monkeypatch, capsys, tmp_path
):
    from ftkit.cli import main
    from ftkit.engine import launch

    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(launch.subprocess, "call", lambda command: pytest.fail("started"))
    assert main(["instruct", "train", "--nproc-per-node", "3", "--out", str(tmp_path)]) == 1
    assert "does not split evenly over 3 processes" in capsys.readouterr().err
