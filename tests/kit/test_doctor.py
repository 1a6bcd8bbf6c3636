"""`ftkit doctor`: the table and verdict here, a faked wrong device, the known traps, the one-line verdict."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from ftkit import doctor
from ftkit.cli import main


@pytest.fixture(autouse=True)
def fresh_checks():
    """Each test sees its own device results (they are cached per process)."""
    doctor._cached_check.cache_clear()
    yield
    doctor._cached_check.cache_clear()


@pytest.fixture
def fake_gpu(monkeypatch):
    """Pretend torch sees one CUDA device; `tiny_run` there is what the test sets `wrong` to do."""
    fake = SimpleNamespace(calls=0, wrong=lambda result, n: result)
    real = doctor.tiny_run

    def run(device: str) -> doctor.RunResult:
        result = real("cpu")
        if device == "cpu":
            return result
        fake.calls += 1
        return fake.wrong(result, fake.calls)

    monkeypatch.setattr(doctor, "accelerators", lambda: ["cuda:0"])
    monkeypatch.setattr(doctor, "describe_device", lambda device: f"fake {device}")
    monkeypatch.setattr(doctor, "tiny_run", run)
    return fake


def shifted(result: doctor.RunResult, loss: float = 0.0, grad: float = 0.0) -> doctor.RunResult:
    return doctor.RunResult(
        loss=result.loss + loss, grads={k: g + grad for k, g in result.grads.items()}
    )


def test_doctor_prints_versions_devices_and_ok_on_this_machine(capsys):
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    for expected in ("Python", "torch", "tiktoken", "tensorflow", "llm-finetune-kit", "cpu"):
        assert expected in out, f"{expected!r} missing from:\n{out}"
    assert "bf16" in out, "the CPU row says how it runs bfloat16"
    assert out.rstrip().splitlines()[-1] == "verdict: ok"


def test_doctor_passes_a_device_that_computes_as_the_cpu(fake_gpu, capsys):
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "cuda:0    ok" in out and out.rstrip().endswith("verdict: ok")
    assert doctor.device_verdict("cuda") is None


def test_doctor_fails_a_device_with_wrong_losses_and_names_it(fake_gpu, capsys):
    fake_gpu.wrong = lambda result, n: shifted(result, loss=13.5)  # MPS's 19.9 vs 3.826 (ch. 7)
    assert main(["doctor"]) == 1
    out = capsys.readouterr().out
    assert "cuda:0    FAILED" in out
    last = out.rstrip().splitlines()[-1]
    assert last.startswith("verdict: FAILED: cuda:0: loss") and "--device cpu" in last, last


def test_doctor_fails_a_device_with_wrong_gradients(fake_gpu, capsys):
    fake_gpu.wrong = lambda result, n: shifted(result, grad=0.5)
    assert main(["doctor"]) == 1
    assert "gradients on cuda:0 differ" in capsys.readouterr().out


def test_doctor_warns_about_non_repeatable_runs_but_passes_them(fake_gpu, capsys):
    fake_gpu.wrong = lambda result, n: shifted(result, loss=1e-6 * n)  # within tolerance
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "non-deterministic" in out and "torch.use_deterministic_algorithms" in out
    assert "CUBLAS_WORKSPACE_CONFIG" in out
    assert out.rstrip().endswith("verdict: ok (1 warning(s) above)")


def test_doctor_reports_a_device_that_raises(fake_gpu, capsys):
    def broken(result, n):
        raise RuntimeError("no kernel image is available for execution on the device")

    fake_gpu.wrong = broken
    assert main(["doctor"]) == 1
    assert "no kernel image" in capsys.readouterr().out


def test_device_verdict_is_one_line_naming_the_problem_and_doctor(fake_gpu):
    fake_gpu.wrong = lambda result, n: shifted(result, loss=16.1)
    verdict = doctor.device_verdict(torch.device("cuda", 0))
    assert verdict is not None and "\n" not in verdict
    assert "cuda:0" in verdict and "ftkit doctor" in verdict
    said = []
    doctor.report_device("auto", say=said.append)  # auto picks the (fake) CUDA device
    assert said == [verdict]


def test_the_cpu_needs_no_check(monkeypatch):
    def boom(device):
        raise AssertionError("the CPU is the reference; nothing runs for it")

    monkeypatch.setattr(doctor, "tiny_run", boom)
    monkeypatch.setattr(doctor, "accelerators", lambda: [])
    assert doctor.device_verdict("cpu") is None
    assert doctor.device_verdict("auto") is None
    said = []
    doctor.report_device(torch.device("cpu"), say=said.append)
    assert said == []


def test_mps_with_torch_before_2_9_is_the_known_trap():
    cpu = doctor.tiny_run("cpu")
    old = doctor.compare_runs("mps", cpu, cpu, cpu, torch_version="2.8.0")
    assert not old.ok and "19.9 instead of 3.826" in old.problems[0]
    assert "2.9" in old.problems[0] and "--device cpu" in old.problems[0]
    assert doctor.compare_runs("mps", cpu, cpu, cpu, torch_version="2.9.1").ok
    assert doctor.compare_runs("cuda:0", cpu, cpu, cpu, torch_version="2.8.0").ok


def test_nan_loss_fails():
    cpu = doctor.tiny_run("cpu")
    result = doctor.compare_runs("mps", cpu, shifted(cpu, loss=float("nan")), torch_version="2.9")
    assert not result.ok and "loss nan" in result.problems[0]


def test_the_check_is_seeded_and_fast():
    first, second = doctor.tiny_run("cpu"), doctor.tiny_run("cpu")
    assert first.loss == second.loss and first.grads.keys() == second.grads.keys()
    assert doctor.check_device("cpu").seconds < 5, "the check takes at most 5 s per device"


@pytest.mark.parametrize(
    ("cpuinfo", "expected"),
    [
        (
            "flags\t\t: fpu sse avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n",
            "AMX-BF16, AVX-512-BF16",
        ),
        ("flags\t\t: fpu sse avx2\n", "bf16 emulated"),
        ("Features\t: fp asimd bf16 i8mm\n", "ARM BF16"),
        ("", "unknown"),
    ],
)
def test_cpu_bf16_from_cpuinfo_flags(cpuinfo, expected):
    assert expected in doctor.cpu_bf16(doctor.cpu_flags(cpuinfo), "AVX2")


def test_missing_tensorflow_says_it_is_only_for_openai_checkpoints(monkeypatch):
    real = doctor.package_version
    monkeypatch.setattr(doctor, "package_version", lambda n: None if n == "tensorflow" else real(n))
    rows = dict(doctor.versions())
    assert "only needed for OpenAI's TensorFlow checkpoints" in rows["tensorflow"]
    assert "[tf]" in rows["tensorflow"]


@pytest.fixture
def cpu_checked_as_wrong_gpu(fake_gpu, monkeypatch):
    """The recipes train on the CPU, but their device check sees a (fake) GPU with wrong losses."""
    fake_gpu.wrong = lambda result, n: shifted(result, loss=16.1)
    monkeypatch.setattr(doctor, "resolve", lambda device: "cuda:0")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model trains faster on one (shared) core
    yield fake_gpu
    torch.set_num_threads(threads)


def test_classify_train_prints_the_verdict_when_its_device_fails(
    cpu_checked_as_wrong_gpu, tmp_path, capsys
):
    args = ["classify", "train", "--model", "tiny", "--limit", "8", "--epochs", "1"]
    assert main([*args, "--device", "cpu", "--out", str(tmp_path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "warning: device check failed on cuda:0" in out and "ftkit doctor" in out


def test_check_prints_the_verdict_when_the_device_fails(
    cpu_checked_as_wrong_gpu, monkeypatch, capsys
):
    from ftkit.check import run

    monkeypatch.setattr(run, "check_once", lambda *args, **kwargs: 0)
    monkeypatch.setattr(run, "may_have_accelerator", lambda: True)  # the fake GPU
    assert main(["check"]) == 0
    assert "warning: device check failed on cuda:0" in capsys.readouterr().err
