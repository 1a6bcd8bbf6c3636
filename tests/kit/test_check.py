"""`ftkit check` and the plugin: stubs are 'not started', a copied reference body turns exactly that exercise solved."""

from __future__ import annotations

import ast
import inspect
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ftkit.check.markers import canonical_stage
from ftkit.check.progress import (
    EXTRA_FAILED,
    FAILING,
    NOT_PROVIDED,
    NOT_STARTED,
    PARTIAL,
    SOLVED,
    Exercise,
    catalog,
    next_exercise,
    render_next,
    stub_hints,
)
from ftkit.check.run import BOOK_TESTS, pytest_args

ROOT = Path(__file__).resolve().parents[2]


def exercise(**outcomes) -> Exercise:
    return Exercise("f", "collate", "collate", "x.py", 1, "hint (book §7.3)", "§7.3", outcomes)


@pytest.mark.parametrize(
    ("outcomes", "status"),
    [
        ({}, NOT_STARTED),
        ({"t1": "not started", "t2": "not started"}, NOT_STARTED),
        ({"t1": "passed", "t2": "passed"}, SOLVED),
        ({"t1": "passed", "t2": "failed"}, FAILING),
        ({"t1": "passed", "t2": "not started"}, PARTIAL),
        ({"t1": "not provided"}, NOT_PROVIDED),
        ({"t1": "passed", "t2": EXTRA_FAILED}, SOLVED),
        ({"t1": "passed", "t2": "not provided"}, SOLVED),
    ],
)
def test_exercise_status_follows_its_tests(outcomes, status):
    assert exercise(**outcomes).status == status


def test_nothing_left_says_whether_some_exercises_were_not_provided():
    solved, missing = exercise(t1="passed"), exercise(t1="not provided")
    assert render_next(None, {"a": solved}) == "Every exercise is solved. Well done!"
    text = render_next(None, {"a": solved, "b": missing})
    assert "1 not provided" in text and "Well done" not in text


def test_stub_hints_reads_the_not_implemented_message(tmp_path):
    stub = tmp_path / "stub.py"
    stub.write_text(
        textwrap.dedent(
            '''
            def f(x):
                """Doc."""
                raise NotImplementedError("pad each row to the longest (book §7.3)")

            class C:
                def __init__(self):
                    raise NotImplementedError("store the scale (book §4.2)")

            def done(x):
                return x
            '''
        )
    )
    hints = stub_hints(stub)
    assert hints["f"] == (4, "pad each row to the longest (book §7.3)")
    assert hints["C"][1] == "store the scale (book §4.2)"
    assert "done" not in hints


def test_catalog_lists_every_stub_with_its_section_in_book_order():
    exercises = catalog("exercises")
    assert exercises, "no exercises found: exercises/ has no stubs"
    for ex in exercises.values():
        assert ex.section, f"{ex.name}: its hint names no book section: {ex.hint}"
        if ex.stage != "book exercises":  # those are checked by marked tests, not one stub
            assert Path(ex.file).exists() and ex.line > 0, ex
    # The first exercise to do on pristine stubs comes from the first stage (the model).
    first = next_exercise(exercises)
    assert first is not None and first.stage == "model"


def test_unknown_stage_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown stage 'colate'; choose one of"):
        canonical_stage("colate")
    assert canonical_stage("instruction-sft") == "instruction SFT"


def test_check_runs_tests_book_and_selects_a_stage_by_marker():
    args = pytest_args("exercises", None, None, None)
    assert str(BOOK_TESTS) in args and not [a for a in args if a.endswith(".py")]
    # A stage collects its own files only (their pytestmark), and its marker still selects.
    args = pytest_args("exercises", "LoRA", None, None)
    assert [a for a in args if a.endswith(".py")] == [str(BOOK_TESTS / "test_lora.py")]
    assert args[args.index("--stage") + 1] == "LoRA"
    spanning = pytest_args("exercises", "book exercises", None, None)
    assert len([a for a in spanning if a.endswith(".py")]) == len(
        list(BOOK_TESTS.glob("test_*.py"))
    )


def run_check(*args: str, pythonpath: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = f"{pythonpath}{os.pathsep}{env.get('PYTHONPATH', '')}"
    return subprocess.run(
        [sys.executable, "-m", "ftkit.cli", "check", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def private_helpers(module_source: str, name: str) -> list[str]:
    """Sources of the module-level private helpers `name` needs, transitively, in file order."""
    tree = ast.parse(module_source)
    defs = {
        node.name: node
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.ClassDef) and node.name.startswith("_")
    }
    needed: set[str] = set()
    todo = [next(n for n in tree.body if getattr(n, "name", None) == name)]
    while todo:
        for node in ast.walk(todo.pop()):
            if isinstance(node, ast.Name) and node.id in defs and node.id not in needed:
                needed.add(node.id)
                todo.append(defs[node.id])
    return [ast.get_source_segment(module_source, defs[n]) for n in defs if n in needed]


def replace_stub_with_reference_body(package_dir: Path, module: str, name: str) -> None:
    """Do what a learner does: paste the reference implementation (and its private helpers) over one stub."""
    import importlib

    path = package_dir / f"{module}.py"
    source = path.read_text(encoding="utf-8")
    node = next(
        n
        for n in ast.parse(source).body
        if isinstance(n, ast.FunctionDef | ast.ClassDef) and n.name == name
    )
    start = (node.decorator_list[0].lineno if node.decorator_list else node.lineno) - 1
    lines = source.splitlines(keepends=True)
    ref_module = importlib.import_module(f"reference.{module}")
    helpers = private_helpers(inspect.getsource(ref_module), name)
    body = inspect.getsource(getattr(ref_module, name))
    lines[start : node.end_lineno] = ["\n\n".join([*helpers, body]) + "\n"]
    path.write_text("".join(lines), encoding="utf-8")


@pytest.fixture(scope="module")
def collate_results(tmp_path_factory):
    """Check the collate stage twice: pristine stubs, then one stub replaced by the reference body."""
    base = tmp_path_factory.mktemp("check")
    pristine = base / "pristine.json"
    result = run_check("--impl", "exercises", "--stage", "collate", "--report", str(pristine))
    assert result.returncode == 0, result.stdout + result.stderr

    learner = base / "src" / "learner"
    shutil.copytree(ROOT / "exercises", learner)
    replace_stub_with_reference_body(learner, "collate", "custom_collate_fn")
    solved = base / "solved.json"
    result_solved = run_check(
        "--impl", "learner", "--stage", "collate", "--report", str(solved), pythonpath=base / "src"
    )
    return result, json.loads(pristine.read_text()), result_solved, json.loads(solved.read_text())


def statuses(report: dict, stage: str) -> dict[str, str]:
    return {ex["name"]: ex["status"] for ex in report["exercises"] if ex["stage"] == stage}


@pytest.mark.checker  # two `ftkit check` child processes (~35 s on 2 cores)
def test_pristine_stubs_are_not_started_and_the_table_says_what_is_next(collate_results):
    result, report, _, _ = collate_results
    collate = statuses(report, "collate")
    assert collate and set(collate.values()) == {NOT_STARTED}, collate
    assert (
        "collate" in result.stdout
        and "Next: write `custom_collate_draft_1` (collate" in result.stdout
    )
    # --stage reports only that stage: no other stage's row, no other stage's exercises.
    assert {ex["stage"] for ex in report["exercises"]} == {"collate"}
    assert "LayerNorm" not in result.stdout and "\nmodel " not in result.stdout
    assert "failed" not in result.stdout.splitlines()[-1]


@pytest.mark.checker  # two `ftkit check` child processes (~35 s on 2 cores)
def test_copying_the_reference_body_solves_exactly_that_exercise(collate_results):
    _, pristine, result, solved = collate_results
    assert result.returncode == 0, result.stdout + result.stderr
    before, after = statuses(pristine, "collate"), statuses(solved, "collate")
    changed = {name for name in after if after[name] != before[name]}
    assert changed == {"custom_collate_fn"}, after
    assert after["custom_collate_fn"] == SOLVED
