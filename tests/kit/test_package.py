"""The kit as a package anyone installs: what the wheel carries, `ftkit init`, reports and exit status.

The real install (wheel built, installed into a fresh venv, run from an empty folder) is CI's
`.ci/package-check`; these are the fast checks of the same decisions.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest

from ftkit import layout
from ftkit.check.progress import (
    EXTRA_FAILED,
    NOT_STARTED,
    TIMED_OUT,
    Exercise,
    exit_status,
    failure_text,
    render_next,
    write_gradescope,
    write_report,
)
from ftkit.check.run import configured_impl
from ftkit.cli import main
from ftkit.commands.init import CONFIG, learner_copy

ROOT = Path(__file__).resolve().parents[2]


def load_setup():
    spec = importlib.util.spec_from_file_location("kit_setup", ROOT / "setup.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # not as __main__: defines the build step, builds nothing
    return module


def test_the_wheel_carries_the_book_files_under_the_kits_own_name():
    shipped = load_setup().book_files()
    inside = set(shipped.values())
    assert all(path.startswith("ftkit/_book/") for path in inside)
    assert not [p for p in inside if "tests" in Path(p).parts], "a folder named tests ships"
    for needed in (
        "ftkit/_book/conftest.py",
        "ftkit/_book/golden/collate.json",
        "ftkit/_book/reference/model.py",
        "ftkit/_book/exercises/collate.py",
        "ftkit/_book/suite/conftest.py",
        "ftkit/_book/suite/book/test_collate.py",
        "ftkit/_book/suite/kit/benchmarks/test_bench_train.py",
    ):
        assert needed in inside, needed
    # Every book test and golden of the checkout is carried (nothing forgotten by a glob).
    for path in [*(ROOT / "tests" / "book").glob("*.py"), *(ROOT / "golden").glob("*.json")]:
        assert path.resolve() in shipped, path


def test_pytest_settings_travel_with_the_suite():
    text = load_setup().pytest_settings((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert text.startswith("[tool.pytest.ini_options]") and "markers" in text
    assert "[project]" not in text and "[tool.ruff" not in text


def test_a_checkout_finds_its_own_files():
    assert layout.is_checkout(ROOT) and not layout.INSTALLED
    assert layout.BOOK_TESTS == ROOT / "tests" / "book" and layout.GOLDEN == ROOT / "golden"
    assert layout.install_hint("tf") == "pip install -e '.[tf]'"
    assert not layout.is_checkout(ROOT / "ftkit")


def test_the_console_script_imports_the_book_code_from_any_folder(tmp_path):
    """`ftkit instruct ...` from a checkout's editable install: not cwd, not PYTHONPATH."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}

    def python(code: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-c", code]
        return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)

    if python("import ftkit").returncode != 0:
        pytest.skip("ftkit is not installed in this Python (only on PYTHONPATH)")
    result = python("import ftkit, reference.collate, exercises; print(reference.__file__)")
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()).parent == layout.ROOT / "reference"


def test_init_writes_stubs_readme_and_config_and_never_overwrites(tmp_path, capsys):
    folder = tmp_path / "mine"
    assert main(["init", str(folder)]) == 0
    names = {p.name for p in folder.iterdir()}
    assert {"collate.py", "model.py", "judge.py", "README.md", CONFIG} <= names
    assert "__init__.py" not in names
    for path in folder.glob("*.py"):
        assert "from exercises." not in path.read_text(encoding="utf-8"), path
    readme = (folder / "README.md").read_text(encoding="utf-8")
    assert "ftkit check" in readme and "--watch" in readme and "--stage" in readme

    (folder / "collate.py").write_text("# my work\n", encoding="utf-8")
    (folder / "model.py").unlink()
    capsys.readouterr()
    assert main(["init", str(folder)]) == 0
    out = capsys.readouterr().out
    assert (folder / "collate.py").read_text(encoding="utf-8") == "# my work\n"
    assert (folder / "model.py").is_file()  # a deleted stub comes back
    assert "kept" in out and "collate.py" in out


def test_init_into_a_file_is_a_clear_error(tmp_path, capsys):
    target = tmp_path / "taken"
    target.write_text("x", encoding="utf-8")
    assert main(["init", str(target)]) == 2
    assert "is a file" in capsys.readouterr().err


def test_learner_copies_import_their_siblings_and_the_kits_reference():
    stub = (
        '"""Run `pytest --impl exercises tests/book/test_collate.py`."""\n'
        "from exercises.collate import PAD_TOKEN_ID\nfrom reference.model import X\n"
    )
    copy = learner_copy(stub)
    assert "from collate import PAD_TOKEN_ID" in copy and "Run `ftkit check`." in copy
    assert copy.index("import ftkit") < copy.index("from reference.model")


def test_check_in_an_init_folder_checks_it(tmp_path):
    (tmp_path / CONFIG).write_text('[check]\nimpl = "."\n', encoding="utf-8")
    (tmp_path / "sub").mkdir()
    assert configured_impl(tmp_path / "sub") == str(tmp_path.resolve())
    assert configured_impl(Path("/")) is None


def exercise(name: str = "f", message: str = "", **outcomes) -> Exercise:
    ex = Exercise(name, "collate", "collate", "x.py", 1, "hint (book §7.3)", "§7.3", outcomes)
    ex.message, ex.where = message, "x.py:3" if message else ""
    return ex


@pytest.mark.parametrize(
    ("outcomes", "status"),
    [
        ({"t": "passed", "u": EXTRA_FAILED}, 0),  # book-only code failing a kit extra
        ({"t": "not started"}, 0),
        ({}, 0),
        ({"t": "passed", "u": "failed"}, 1),
        ({"t": TIMED_OUT}, 1),
    ],
)
def test_the_exit_status_follows_the_table(outcomes, status):
    assert exit_status({"f": exercise(**outcomes), "g": exercise("g")}) == status


def test_a_blocked_exercise_fails_the_run():
    ex = exercise(t="failed")
    ex.blocked_by = ["other"]
    assert exit_status({"f": ex}) == 1


def test_gradescope_counts_provided_exercises_and_labels_not_started(tmp_path):
    exercises = {
        "a": exercise("a", "a kit extra failed", t="passed", u=EXTRA_FAILED),
        "b": exercise("b"),  # not started
        "c": exercise("c", "wrong shape", t="failed"),
        "d": exercise("d", t="not provided"),
    }
    path = tmp_path / "missing" / "folder" / "results.json"  # created
    write_gradescope(exercises, path)
    report = json.loads(path.read_text(encoding="utf-8"))
    tests = {t["name"]: t for t in report["tests"]}
    assert set(tests) == {"a", "b (not started)", "c"}  # d not provided: not counted
    assert report["score"] == 1.0 and sum(t["max_score"] for t in tests.values()) == 3
    assert "status" not in tests["b (not started)"]  # 0 of 1, but not "failed"
    assert tests["b (not started)"]["output"].startswith(NOT_STARTED)
    assert tests["c"]["status"] == "failed" and "wrong shape" in tests["c"]["output"]
    assert tests["a"]["status"] == "passed" and "failure" not in tests["a"]["output"]
    assert "1 of 3 provided exercises solved, 1 not started" in report["output"]


def test_solved_rows_carry_no_failure_text():
    solved = exercise("a", "a kit extra failed", t="passed", u=EXTRA_FAILED)
    assert failure_text(solved) == ("", "")
    partial = exercise("b", "boom", t="failed")
    assert "last failure: boom" in render_next(partial)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_a_report_that_cannot_be_written_raises(tmp_path):
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(OSError):
            write_report({"a": exercise("a")}, tmp_path / "out" / "r.json", "mine")
    finally:
        tmp_path.chmod(0o700)


def test_a_report_under_a_file_raises(tmp_path):
    (tmp_path / "file").write_text("x", encoding="utf-8")
    with pytest.raises(OSError):
        write_report({"a": exercise("a")}, tmp_path / "file" / "r.json", "mine")
