"""`ftkit check` on learners' implementations as they come: hangs, broken imports, a few names.

Each test writes a small implementation into tmp_path and runs the real command on it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

# Each test runs `ftkit check` in a child process: their own CI step (-m checker).
pytestmark = pytest.mark.checker

ROOT = Path(__file__).resolve().parents[2]


def write(folder: Path, name: str, source: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source).lstrip(), encoding="utf-8")
    return path


def env_with(folder: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(folder), env.get("PYTHONPATH", "")]))
    return env


def check(folder: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ftkit.cli", "check", *args],
        cwd=ROOT,
        env=env_with(folder),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


ENDLESS = """
    def custom_collate_fn(batch, pad_token_id=50256, ignore_index=-100, allowed_max_length=None, device="cpu"):
        while True:
            try:
                pass
            except Exception:  # a learner's catch-all must not swallow the time limit
                pass
"""


def test_an_endless_loop_times_out_once_and_its_other_tests_are_skipped(tmp_path):
    write(tmp_path, "endless_learner.py", ENDLESS)
    start = time.monotonic()
    result = check(tmp_path, "--impl", "endless_learner", "--timeout", "2", timeout=120)
    elapsed = time.monotonic() - start
    out = result.stdout
    assert result.returncode == 1, out + result.stderr
    assert "1 failed" in out, out  # the first test hangs; the others of that exercise are skipped
    assert "last failure: timed out — an endless loop?" in out
    assert f"at {tmp_path / 'endless_learner.py'}:2" in out
    assert elapsed < 60, f"took {elapsed:.0f} s"


# A gc callback that raises runs inside every later `ast.parse` (pytest's tracebacks, the
# summary) and, through the unraisable hook's own traceback, makes a nested parse: CPython 3.11
# then fails the outer one ("AST constructor recursion depth mismatch", pytest exit 3). A time
# limit's alarm raising in hypothesis's gc callback during pytest's reporting did the same.
RAISING_GC_CALLBACK = """
    import gc


    def _complain(phase, info):
        raise RuntimeError(f"a callback that fails in phase {phase}")


    def format_input(entry):
        gc.callbacks.append(_complain)
        return "not the book's prompt"
"""


def test_learner_code_that_breaks_pytests_reporting_is_one_failure_not_an_internal_error(
    tmp_path,
):
    write(tmp_path, "gc_learner.py", RAISING_GC_CALLBACK)
    result = check(tmp_path, "--impl", str(tmp_path / "gc_learner.py"), timeout=120)
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    assert "INTERNALERROR" not in out and "SystemError" not in out, out
    assert "Next: fix `format_input`" in out, out
    assert "last failure: AssertionError: format_input(data[50])" in out, out


def test_an_internal_error_of_pytest_ends_with_one_paragraph_and_exit_1(tmp_path):
    write(tmp_path, "three_learner.py", THREE_NAMES)
    write(
        tmp_path,
        "breaking_plugin.py",
        """
        def pytest_runtest_logfinish(nodeid, location):
            raise SystemError("a stand-in for a failure inside pytest")
        """,
    )
    env = env_with(tmp_path) | {"PYTEST_PLUGINS": "breaking_plugin"}
    result = subprocess.run(
        [sys.executable, "-m", "ftkit.cli", "check", "--impl", "three_learner"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    paragraph = "ftkit: the check stopped early: pytest failed while running the tests"
    assert paragraph in result.stderr, out
    assert "SystemError: a stand-in for a failure inside pytest" in result.stderr, out
    # pytest's own lines (for a bug report) come first; the paragraph is the last word
    assert "INTERNALERROR" not in result.stderr.split(paragraph)[1], out


@pytest.mark.parametrize(
    ("files", "impl", "expected"),
    [
        (
            {
                "syntax_learner/__init__.py": "",
                "syntax_learner/collate.py": "def f(x:\n    return x\n",
            },
            "syntax_learner",
            ["syntax_learner/collate.py:1", "SyntaxError: '(' was never closed"],
        ),
        (
            {"raising_learner.py": "import os\n\nraise RuntimeError('no network')\n"},
            "raising_learner",
            ["raising_learner.py:3", "RuntimeError: no network"],
        ),
        (
            {"missing_dep_learner.py": "import no_such_module_anywhere\n"},
            "missing_dep_learner",
            ["missing_dep_learner.py:1", "ModuleNotFoundError: No module named 'no_such_module"],
        ),
        ({}, "exercices", ["--impl 'exercices': no module", "Did you mean: exercises?"]),
    ],
    ids=["syntax-error", "exception-at-import", "missing-module", "misspelled-impl"],
)
def test_an_implementation_that_cannot_be_imported_gives_one_block_and_exit_2(
    tmp_path, files, impl, expected
):
    for name, source in files.items():
        write(tmp_path, name, source)
    start = time.monotonic()
    result = check(tmp_path, "--impl", impl, timeout=120)
    out = result.stdout + result.stderr
    assert result.returncode == 2, out
    for text in expected:
        assert text in out, out
    assert "Traceback" not in out and "INTERNALERROR" not in out, out
    assert len(out.strip().splitlines()) < 12, out  # one block, no flood
    assert out.strip().splitlines()[-1].startswith(("Fix this error", "  searched:")), out
    assert time.monotonic() - start < 60


THREE_NAMES = '''
    """A learner's adapter: their own format_input (with a bug), the kit's two others."""
    from pathlib import Path

    from reference.collate import custom_collate_fn
    from reference.instruction_data import InstructionDataset


    def format_input(entry, *, style="alpaca"):
        Path("learner_wrote_this.txt").write_text("hello")  # lands in a temporary folder
        return "Below is an instruction." + entry["instructions"]  # a typo: KeyError
'''


@pytest.fixture(scope="module")
def three_names(tmp_path_factory):
    folder = tmp_path_factory.mktemp("three")
    write(folder, "three_learner.py", THREE_NAMES)
    report = folder / "results.json"
    start = time.monotonic()
    result = check(
        folder, "--impl", "three_learner", "--format", "gradescope", "--report", str(report)
    )
    return folder, result, time.monotonic() - start, json.loads(report.read_text())


def test_only_the_tests_of_the_names_an_adapter_provides_run(three_names):
    _, result, elapsed, report = three_names
    assert result.returncode == 1, result.stdout + result.stderr
    names = {t["name"] for t in report["tests"]}
    assert {"custom_collate_fn", "InstructionDataset", "format_input"} <= names
    assert "GPTModel" not in names and "train_model_simple" not in names  # not provided: not run
    assert elapsed < 60, f"{elapsed:.0f} s for three names"


def test_gradescope_results_have_a_test_per_exercise(three_names):
    _, _, _, report = three_names
    by_name = {t["name"]: t for t in report["tests"]}
    for test in report["tests"]:
        assert set(test) == {"name", "score", "max_score", "output", "status"}
    assert by_name["custom_collate_fn"]["score"] == 1.0
    assert by_name["custom_collate_fn"]["status"] == "passed"
    assert by_name["format_input"]["score"] == 0.0
    assert by_name["format_input"]["status"] == "failed"


def test_failures_name_the_learners_file_and_line(three_names):
    folder, result, _, _ = three_names
    learner = folder / "three_learner.py"
    assert "Next: fix `format_input`" in result.stdout
    assert f"  {learner}:8\n" in result.stdout, result.stdout  # where they defined it
    assert f"at {learner}:10\n" in result.stdout, result.stdout  # where it failed


def test_learner_code_runs_in_a_temporary_folder(three_names):
    folder, _, _, _ = three_names
    assert not (ROOT / "learner_wrote_this.txt").exists()
    assert not (folder / "learner_wrote_this.txt").exists()


def test_the_table_and_next_are_the_last_lines(three_names):
    _, result, _, _ = three_names
    lines = result.stdout.rstrip().splitlines()
    table = next(i for i, line in enumerate(lines) if line.startswith("stage "))
    assert "SKIPPED" not in "\n".join(lines), "skip lines only with -v"
    tail = lines[table:]
    assert any(line.startswith("Next: ") for line in tail)
    assert not any(" passed" in line or " failed" in line for line in tail), tail


def child_pids(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in children.read_text().split()] if children.exists() else []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc")
def test_killing_ftkit_check_leaves_no_pytest_behind(tmp_path):
    write(tmp_path, "endless_learner.py", ENDLESS)
    proc = subprocess.Popen(
        [sys.executable, "-m", "ftkit.cli", "check", "--impl", "endless_learner"],
        cwd=ROOT,
        env=env_with(tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not child_pids(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        children = child_pids(proc.pid)
        assert children, "ftkit check started no pytest"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(Path(f"/proc/{c}").exists() for c in children):
        time.sleep(0.2)
    alive = [c for c in children if Path(f"/proc/{c}/status").exists()]
    states = [Path(f"/proc/{c}/status").read_text().split("State:")[1].split()[0] for c in alive]
    assert all(s == "Z" for s in states), f"orphaned pytest {alive} still running"
