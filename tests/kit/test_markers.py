"""tests/book's markers cannot rot: each file declares a known stage, each test the names it uses."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ftkit.check.impl import exercise_keys
from ftkit.check.markers import (
    STAGE_ORDER,
    Usage,
    book_test_files,
    declared,
    marker_lines,
    module_stage,
    problems,
    read_tests,
    rewrite,
)
from ftkit.check.plugin import USAGE_KEY


@pytest.mark.parametrize("path", book_test_files(), ids=lambda p: p.name)
def test_every_book_file_declares_one_known_stage(path):
    import ast

    stage = module_stage(ast.parse(path.read_text(encoding="utf-8")))
    assert stage in STAGE_ORDER, (
        f"{path.name}: add `pytestmark = pytest.mark.stage(...)` naming one of {STAGE_ORDER}"
    )


def test_every_exercise_marker_names_a_reference_name():
    known = set(exercise_keys())
    bad = {k: t.exercises for k, t in declared().items() if set(t.exercises) - known}
    assert not bad, f"exercise markers naming no reference name: {bad}"


def test_markers_agree_with_what_each_test_looks_up(request):
    """In a full run the book tests ran first: compare; otherwise run them against the reference."""
    if request.config.getoption("--impl") != "reference":
        pytest.skip("markers are checked in the reference run")
    recorder = request.config.stash.get(USAGE_KEY, None)
    functions = recorder.functions if recorder is not None else {}
    files = {key.split("::")[0] for key in functions}
    if files == {p.name for p in book_test_files()} and any(u.ran for u in functions.values()):
        found = problems(functions)
    else:
        result = subprocess.run(
            [sys.executable, "-m", "ftkit.check.markers", "--check"],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
        found = []
    assert not found, (
        "exercise markers disagree with use; run `python -m ftkit.check.markers --write`:\n"
        + "\n".join(found)
    )


def test_problems_names_a_missing_and_an_unused_marker():
    found = problems(
        {
            "test_a.py::test_x": Usage({"format_input"}, True, 2, 2, {"format_input", "generate"}),
            "test_a.py::test_y": Usage({"generate", "format_input"}, True, 1, 1, {"generate"}),
            "test_a.py::test_z": Usage(set(), True, 1, 0, set()),
        }
    )
    assert any("test_x" in p and "'generate'" in p and "lacks" in p for p in found)
    assert any("test_y" in p and "'format_input'" in p and "never" in p for p in found)
    assert any("test_z" in p and "no @pytest.mark.exercise" in p for p in found)


def test_rewrite_replaces_the_marker_and_keeps_everything_else(tmp_path):
    path = tmp_path / "test_demo.py"
    path.write_text(
        "import pytest\n\n\n"
        '@pytest.mark.exercise("old")\n'
        "@pytest.mark.parametrize('n', [1])\n"
        "def test_a(impl, n):\n    impl.generate\n\n\n"
        "class TestB:\n    def test_b(self, impl):\n        pass\n"
    )
    assert rewrite(path, {"test_demo.py::test_a": ["generate"], "test_demo.py::TestB::test_b": []})
    text = path.read_text()
    assert '@pytest.mark.exercise("generate")\n@pytest.mark.parametrize' in text
    assert "old" not in text
    _, tests = read_tests(path)
    assert [t.exercises for t in tests] == [("generate",), ()]
    assert not rewrite(path, {"test_demo.py::test_a": ["generate"]})  # idempotent


def test_long_markers_wrap_as_ruff_formats_them():
    names = [f"name_number_{i}" for i in range(3)]
    assert marker_lines(names, "") == [
        f"@pytest.mark.exercise({', '.join(map(repr, names))})".replace("'", '"')
    ]
    long = [f"a_rather_long_exercise_name_{i}" for i in range(5)]
    lines = marker_lines(long, "    ")
    assert lines[0] == "    @pytest.mark.exercise(" and lines[-1] == "    )"
    assert all(len(line) <= 100 for line in lines)
