"""A whole-suite `pytest` run spreads over the CPUs; a run of chosen tests stays in one process.

Loaded by pytest's `addopts` (`-p ftkit.suite`, pyproject.toml) before the command line is
parsed, so it can add pytest-xdist's `-n N` to a plain `pytest` (or `pytest --impl PACKAGE`)
when pytest-xdist is installed. It leaves the run in one process when the command names
test files or node ids (a targeted run starts faster in one process), asks for workers itself
(`-n`, `--dist`), turns xdist off (`-p no:xdist`, which `ftkit check` and `ftkit grade` pass),
debugs (`--pdb`, `--trace`, `-s`), only lists (`--collect-only`, `--help`, ...), or when
`FTKIT_PYTEST_WORKERS=1`, or checks an implementation other than the reference (`--impl`,
`FTKIT_IMPL`: the checker runs the learner's code in a temporary working folder, which
xdist's workers would start in). `FTKIT_PYTEST_WORKERS=N` sets the count; the default is the CPUs
this process may use, at most 8. Each worker then gives torch its share of the CPUs
(tests/conftest.py, `torch_threads_per_worker`), so N workers never oversubscribe the
machine.
"""

from __future__ import annotations

import importlib.util
import os

import pytest

MAX_WORKERS = 8
ENV = "FTKIT_PYTEST_WORKERS"
# Options after which one process is the right answer (debugging, listing, xdist itself).
_ONE_PROCESS = {
    "-n",
    "--numprocesses",
    "--dist",
    "--tx",
    "--pdb",
    "--trace",
    "-s",
    "--capture=no",
    "--collect-only",
    "--co",
    "--help",
    "-h",
    "--version",
    "-V",
    "--fixtures",
    "--markers",
    "--setup-plan",
    "--setup-only",
}
# Options whose value is the next argument (so that value is not taken for a test path).
_TAKES_VALUE = {
    "-k",
    "-m",
    "-p",
    "-o",
    "-c",
    "--impl",
    "--junitxml",
    "--junit-xml",
    "--rootdir",
    "--basetemp",
    "--timeout",
    "--stage",
    "--deselect",
    "--ignore",
    "--ignore-glob",
    "--confcutdir",
    "--maxfail",
    "--tb",
    "-W",
    "--durations",
    "--ftkit-report",
    "--ftkit-format",
    "--benchmark-json",
    "--benchmark-save",
}


def cpus() -> int:
    """The CPUs this process may run on (the affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def workers_for(args: list[str], environ: dict[str, str] | None = None) -> int:
    """How many xdist workers a run with these command-line arguments gets (1 = no xdist)."""
    environ = os.environ if environ is None else environ
    if importlib.util.find_spec("xdist") is None or "PYTEST_XDIST_WORKER" in environ:
        return 1
    chosen = environ.get(ENV, "").strip()
    wanted = int(chosen) if chosen.isdigit() else min(cpus(), MAX_WORKERS)
    if wanted <= 1:
        return 1
    if environ.get("FTKIT_IMPL", "reference") != "reference":
        return 1
    expect_value = ""
    for arg in args:
        if expect_value:
            option, expect_value = expect_value, ""
            if (option, arg) == ("-p", "no:xdist") or (option == "--impl" and arg != "reference"):
                return 1
            continue
        if arg.startswith("--impl=") and arg != "--impl=reference":
            return 1
        name = arg.split("=", 1)[0]
        if arg in ("-pno:xdist", "-p=no:xdist") or name in _ONE_PROCESS:
            return 1
        if arg.startswith("-n") and arg[2:].isdigit() or arg.startswith("-n="):
            return 1
        if arg.startswith("-"):
            expect_value = arg if arg in _TAKES_VALUE else ""
            continue
        return 1  # a test path or node id: a targeted run
    return wanted


def pytest_load_initial_conftests(early_config: pytest.Config, args: list[str]) -> None:
    """Add `-n N` to a whole-suite run (pytest calls this hook on `-p` plugins, not conftests)."""
    count = workers_for(args)
    if count > 1:
        # loadscope: a module's tests share one worker, so module fixtures are built once.
        args[:] = [*args, "-n", str(count), "--dist", "loadscope"]
