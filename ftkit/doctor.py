"""`ftkit doctor`'s checks: versions, the devices torch sees, and a numeric check per device.

The numeric check runs the same seeded tiny `GPTModel` (book ch. 4) forward and backward
on the CPU and on a device and compares the loss and the gradients: a backend that gets
them wrong gives the book's chapters wrong numbers too (on Apple's MPS with torch < 2.9
the ch. 7 first loss was 19.9 where the CPU gives 3.826). The comparison is a pure
function (`compare_runs`), so a test can feed it a wrong device result.
"""

from __future__ import annotations

import functools
import importlib.metadata
import platform
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

# The tiny model of the check: small enough for a few milliseconds on any device.
CHECK_CONFIG = {
    "vocab_size": 512,
    "context_length": 32,
    "emb_dim": 64,
    "n_heads": 4,
    "n_layers": 2,
    "drop_rate": 0.0,
    "qkv_bias": True,
}
CHECK_SEED = 123  # the book's seed
# float32 on two kernel libraries differs by rounding only (~1e-6 here). The book prints
# losses to 3 decimals, so a loss 1e-3 away already shows; a gradient is wrong when it
# differs by 1% of the largest gradient.
LOSS_ATOL = 1e-3
GRAD_RTOL = 1e-2
MPS_FIXED = (2, 9)  # torch release from which MPS gives the book's ch. 7 losses

DETERMINISM_HINT = (
    "for repeatable runs call torch.use_deterministic_algorithms(True) and set "
    "CUBLAS_WORKSPACE_CONFIG=:4096:8 before starting Python"
)
MPS_HINT = (
    f"upgrade torch to >= {MPS_FIXED[0]}.{MPS_FIXED[1]} (pip install -U torch) or use --device cpu"
)


@dataclass(frozen=True)
class RunResult:
    """The loss and the gradients (on the CPU, by parameter name) of one tiny forward/backward."""

    loss: float
    grads: dict[str, torch.Tensor]


@dataclass
class DeviceCheck:
    """The outcome of the numeric check on one device: `problems` fail it, `notes` only warn."""

    device: str
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    loss_diff: float | None = None
    grad_diff: float | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems


# ------------------------------------------------------------------ versions


def package_version(name: str) -> str | None:
    """An installed distribution's version, read from its metadata (never imports it: TF is slow)."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def versions() -> list[tuple[str, str]]:
    """(name, version or what its absence means) for Python, the libraries and the kit."""
    rows = [
        ("Python", f"{platform.python_version()} ({platform.system()} {platform.machine()})"),
        (
            "torch",
            torch.__version__ + (f" (CUDA {torch.version.cuda})" if torch.version.cuda else ""),
        ),
    ]
    from ftkit.layout import install_hint, where

    optional = {
        "tiktoken": f"missing: the book's tokenizer; {install_hint()}",
        "tensorflow": "not installed: only needed for OpenAI's TensorFlow checkpoints "
        f"({install_hint('tf')})",
        "transformers": f"not installed: only for Hugging Face interop ({install_hint('hf')})",
        "huggingface_hub": f"missing: GPT-2's weights from Hugging Face; {install_hint()}",
        "llms-from-scratch": "not installed: the book's package, a peer to compare against "
        f"({install_hint('book')})",
    }
    for name, absent in optional.items():
        rows.append((name, package_version(name) or absent))
    version = package_version("llm-finetune-kit")
    rows.append(("llm-finetune-kit", f"{version}, {where()}" if version else where()))
    return rows


# ------------------------------------------------------------------ devices


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    """The CPU's feature flags from /proc/cpuinfo (x86 `flags`, ARM `Features`); empty if unknown."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return set()
    match = re.search(r"^(?:flags|Features)\s*:\s*(.*)$", cpuinfo, re.MULTILINE)
    return set(match.group(1).split()) if match else set()


def cpu_name(cpuinfo: str | None = None) -> str:
    """The CPU's model name (/proc/cpuinfo), else what `platform` knows."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    match = re.search(r"^model name\s*:\s*(.*)$", cpuinfo, re.MULTILINE)
    return match.group(1).strip() if match else (platform.processor() or platform.machine())


def cpu_bf16(flags: set[str], capability: str) -> str:
    """How the CPU runs bfloat16: in hardware (AMX, AVX-512-BF16, ARM BF16) or emulated."""
    found = [
        label
        for flag, label in (
            ("amx_bf16", "AMX-BF16"),
            ("avx512_bf16", "AVX-512-BF16"),
            ("bf16", "ARM BF16"),
        )
        if flag in flags
    ]
    if found:
        return f"bf16 in hardware ({', '.join(found)}; kernels: {capability})"
    if not flags:
        return f"bf16 support unknown (kernels: {capability})"
    return f"bf16 emulated, slower than float32 (kernels: {capability})"


def accelerators() -> list[str]:
    """The non-CPU devices torch can use here: `cuda:0`, `cuda:1`, ..., `mps`."""
    found = (
        [f"cuda:{i}" for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    )
    if torch.backends.mps.is_available():
        found.append("mps")
    return found


def describe_device(device: str) -> str:
    """One line about a device: its name and bfloat16 support."""
    if device == "cpu":
        capability = torch.backends.cpu.get_cpu_capability()
        return f"{cpu_name()}; {cpu_bf16(cpu_flags(), capability)}"
    if device.startswith("cuda"):
        index = torch.device(device).index or 0
        major, minor = torch.cuda.get_device_capability(index)
        bf16 = "bf16 in hardware" if major >= 8 else "no bf16 in hardware (before Ampere)"
        return f"{torch.cuda.get_device_name(index)}, compute capability {major}.{minor}; {bf16}"
    if device == "mps":
        return f"Apple MPS (macOS {platform.mac_ver()[0] or '?'})"
    return device


# ------------------------------------------------------------------ the numeric check


def check_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed token ids and next-token targets for the check (2 texts of 16 tokens)."""
    generator = torch.Generator().manual_seed(CHECK_SEED)
    tokens = torch.randint(0, CHECK_CONFIG["vocab_size"], (2, 17), generator=generator)
    return tokens[:, :-1], tokens[:, 1:]


def tiny_run(device: str) -> RunResult:
    """The seeded tiny GPTModel's cross-entropy loss and gradients on `device` (book §4.6, §5.1)."""
    from reference.model import GPTModel

    torch.manual_seed(CHECK_SEED)
    model = GPTModel(CHECK_CONFIG)  # built on the CPU: the same weights for every device
    model.to(device)
    inputs, targets = (t.to(device) for t in check_inputs())
    # Full float32 matmuls for the check: TF32 (allowed by `set_float32_matmul_precision`)
    # would be a precision choice, not a broken kernel.
    precision = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        logits = model(inputs)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten())
        loss.backward()
    finally:
        torch.set_float32_matmul_precision(precision)
    grads = {
        name: param.grad.detach().to("cpu", torch.float32)
        for name, param in model.named_parameters()
        if param.grad is not None
    }
    return RunResult(loss=float(loss.item()), grads=grads)


def max_grad_diff(reference: RunResult, other: RunResult) -> tuple[float, float]:
    """The largest gradient difference and the largest reference gradient (absolute values)."""
    diff = max((reference.grads[n] - other.grads[n]).abs().max().item() for n in reference.grads)
    scale = max(g.abs().max().item() for g in reference.grads.values())
    return diff, scale


def compare_runs(
    device: str,
    cpu: RunResult,
    first: RunResult,
    second: RunResult | None = None,
    *,
    loss_atol: float = LOSS_ATOL,
    grad_rtol: float = GRAD_RTOL,
    torch_version: str = torch.__version__,
) -> DeviceCheck:
    """Judge a device's runs against the CPU's: wrong numbers fail, non-repeatable runs warn."""
    result = DeviceCheck(device)
    missing = sorted(set(cpu.grads) - set(first.grads))
    if missing:
        result.problems.append(f"no gradient for {missing[:3]} on {device}")
        return result
    result.loss_diff = abs(cpu.loss - first.loss)
    result.grad_diff, scale = max_grad_diff(cpu, first)
    if not result.loss_diff <= loss_atol:  # `not <=` also catches NaN
        result.problems.append(
            f"loss {first.loss:.4f} on {device} vs {cpu.loss:.4f} on the CPU "
            f"(differs by {result.loss_diff:.2g}, tolerance {loss_atol:g})"
        )
    if not result.grad_diff <= grad_rtol * scale:
        result.problems.append(
            f"gradients on {device} differ from the CPU's by up to {result.grad_diff:.2g} "
            f"(tolerance {grad_rtol:g} x largest gradient {scale:.2g})"
        )
    if device == "mps" and torch_release(torch_version) < MPS_FIXED:
        result.problems.append(
            f"known trap: torch {torch_version} on MPS gave wrong losses in the book's ch. 7 "
            f"(first loss 19.9 instead of 3.826); {MPS_HINT}"
        )
    if second is not None and (
        second.loss != first.loss
        or any(not torch.equal(first.grads[n], second.grads[n]) for n in first.grads)
    ):
        result.notes.append(
            f"two identical runs on {device} gave different numbers (non-deterministic "
            f"kernels); {DETERMINISM_HINT}"
        )
    return result


def torch_release(version: str) -> tuple[int, int]:
    """(major, minor) of a torch version string such as `2.8.0+cpu` or `2.10.0.dev20250101`."""
    numbers = re.findall(r"\d+", version)[:2]
    return (int(numbers[0]), int(numbers[1])) if len(numbers) == 2 else (0, 0)


@functools.cache
def cpu_run() -> RunResult:
    """The CPU's run of the check, computed once per process."""
    return tiny_run("cpu")


def check_device(device: str) -> DeviceCheck:
    """Run the numeric check on one device (twice, for repeatability) against the CPU."""
    started = time.perf_counter()
    try:
        first = tiny_run(device)
        second = tiny_run(device)
    except Exception as err:  # a missing kernel or a broken driver is the finding itself
        result = DeviceCheck(device, problems=[f"the tiny model fails on {device}: {err!r}"[:300]])
    else:
        result = compare_runs(device, cpu_run(), first, second)
    result.seconds = time.perf_counter() - started
    return result


@functools.cache
def _cached_check(device: str) -> DeviceCheck:
    return check_device(device)


def resolve(device: str | torch.device) -> str:
    """A device name for the check: `auto` becomes CUDA, then MPS, then the CPU (as the recipes)."""
    name = str(device)
    if name == "auto":
        return (accelerators() or ["cpu"])[0]
    if name == "cuda":
        return "cuda:0"
    return name


def device_verdict(device: str | torch.device) -> str | None:
    """One line naming what is wrong with `device` (and `ftkit doctor`), or None when its check passes.

    The CPU is the reference and needs no check. Each device is checked once per process.
    """
    name = resolve(device)
    if name == "cpu":
        return None
    result = _cached_check(name)
    if result.ok:
        return None
    return f"warning: device check failed on {name}: {result.problems[0]} (details: ftkit doctor)"


def report_device(device: str | torch.device, say: Callable[[str], None] = print) -> None:
    """Print `device_verdict`'s line through `say` when the device's check fails; silent otherwise."""
    verdict = device_verdict(device)
    if verdict:
        say(verdict)


# ------------------------------------------------------------------ the report


def diagnose(say: Callable[[str], None] = print) -> int:
    """Print versions, devices and each device's check, then one verdict line; 0 when all pass."""
    rows = versions()
    width = max(len(name) for name, _ in rows)
    say("versions")
    for name, value in rows:
        say(f"  {name:<{width}}  {value}")

    say("devices")
    say(f"  {'cpu':<8}  {describe_device('cpu')}  (the reference)")
    devices = accelerators()
    results = []
    for device in devices:
        say(f"  {device:<8}  {describe_device(device)}")
    if not devices:
        say("  no CUDA or MPS device: everything runs on the CPU")

    if devices:
        say(
            f"numeric check: seeded tiny GPTModel forward + backward, vs the CPU "
            f"(loss within {LOSS_ATOL:g}, gradients within {GRAD_RTOL:g} x the largest)"
        )
    for device in devices:
        result = check_device(device)
        results.append(result)
        diffs = (
            f"loss diff {result.loss_diff:.2g}, grad diff {result.grad_diff:.2g}"
            if result.grad_diff is not None
            else "no numbers"
        )
        say(f"  {device:<8}  {'ok' if result.ok else 'FAILED'}  ({diffs}; {result.seconds:.1f} s)")
        for problem in result.problems:
            say(f"    problem: {problem}")
        for note in result.notes:
            say(f"    warning: {note}")

    failed = [r for r in results if not r.ok]
    if failed:
        say(
            "verdict: FAILED: "
            + "; ".join(f"{r.device}: {r.problems[0]}" for r in failed)
            + " -- until fixed, use --device cpu"
        )
        return 1
    warnings = sum(len(r.notes) for r in results)
    say("verdict: ok" + (f" ({warnings} warning(s) above)" if warnings else ""))
    return 0
