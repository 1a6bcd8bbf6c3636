"""A whole-suite `pytest` spreads over the CPUs; targeted, debugging and checker runs do not.

ftkit/suite.py decides it from the command line before pytest parses it.
"""

from __future__ import annotations

import importlib.util

import pytest

from ftkit import suite

ADDOPTS = ["-p", "ftkit.suite", "--strict-markers", "-ra", "-m", "not slow", "--benchmark-disable"]
QUIET_ENV: dict[str, str] = {}

needs_xdist = pytest.mark.skipif(
    importlib.util.find_spec("xdist") is None, reason="pytest-xdist is not installed"
)


@pytest.fixture
def four_cpus(monkeypatch):
    monkeypatch.setattr(suite, "cpus", lambda: 4)


@needs_xdist
@pytest.mark.parametrize(
    "command",
    [
        [],
        ["-q"],
        ["--impl", "reference", "-q"],
        ["--impl=reference"],
        ["--junitxml=out.xml"],
        ["-k", "collate", "-x"],
    ],
)
def test_a_whole_suite_run_gets_one_worker_per_cpu(four_cpus, command):
    assert suite.workers_for(ADDOPTS + command, QUIET_ENV) == 4


@needs_xdist
@pytest.mark.parametrize(
    "command",
    [
        ["tests/kit/test_engine.py"],
        ["-q", "tests/kit"],
        ["tests/book/test_collate.py::test_targets"],
        ["-m", "checker", "tests/kit"],
        ["-p", "no:xdist"],
        ["-pno:xdist"],
        ["-n", "3"],
        ["-n3"],
        ["--pdb"],
        ["-s"],
        ["--collect-only"],
        ["--help"],
        # The checker works in a temporary folder, where xdist's workers would start.
        ["--impl", "exercises", "-q"],
        ["--impl=my_solution.py"],
    ],
)
def test_targeted_debugging_and_explicit_runs_stay_as_asked(four_cpus, command):
    assert suite.workers_for(ADDOPTS + command, QUIET_ENV) == 1


@needs_xdist
def test_the_environment_sets_or_disables_the_count(four_cpus):
    assert suite.workers_for(ADDOPTS, {suite.ENV: "2"}) == 2
    assert suite.workers_for(ADDOPTS, {suite.ENV: "1"}) == 1
    assert suite.workers_for(ADDOPTS, {"PYTEST_XDIST_WORKER": "gw0"}) == 1  # no nesting
    assert suite.workers_for(ADDOPTS, {"FTKIT_IMPL": "exercises"}) == 1
    assert suite.workers_for(ADDOPTS, {"FTKIT_IMPL": "reference"}) == 4


def test_one_cpu_or_no_xdist_means_one_process(monkeypatch):
    monkeypatch.setattr(suite, "cpus", lambda: 1)
    assert suite.workers_for(ADDOPTS, QUIET_ENV) == 1
    monkeypatch.setattr(suite, "cpus", lambda: 4)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    assert suite.workers_for(ADDOPTS, QUIET_ENV) == 1


def test_the_checker_names_its_test_folder_so_it_runs_in_one_process():
    from ftkit.check.run import pytest_args

    args = pytest_args("reference", None, None, None)
    assert suite.workers_for(args[3:], QUIET_ENV) == 1
