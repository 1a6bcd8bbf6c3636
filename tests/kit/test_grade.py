"""`ftkit grade` on a hostile corpus (tests/kit/fixtures/hostile): each forging technique, the
answer-key write and each limit gets its verdict and no point; the goldens are byte-identical
afterwards, no process outlives the grade, and an honest submission beside them scores fully.

The corpus runs under the `grade` marker (its own CI step, about 12 minutes on 2 loaded cores); the
verification rules themselves are checked in milliseconds in the default run.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ftkit.grade import sandbox, verify
from ftkit.grade.run import Checked, Settings, verdict_of
from ftkit.grade.sandbox import Limits, Outcome, bwrap
from ftkit.layout import EXERCISES, GOLDEN, ROOT

HOSTILE = Path(__file__).parent / "fixtures" / "hostile"
COLLATE = ["custom_collate_draft_1", "custom_collate_draft_2", "custom_collate_fn"]
# The corpus's limits of a whole check: an honest collate check needs about 30 CPU seconds; the
# busy children of cpu_fork.py reach CPU_S well before WALL_S even niced on a loaded machine.
CPU_S, WALL_S = 50, 150


def _tensor(values, **extra) -> dict:
    return {
        "kind": "tensor",
        "name": "t",
        "value": {"tensor": [len(values)], "dtype": "torch.float32", "sample": values},
        **extra,
    }


def test_a_record_matches_only_within_the_references_tolerance():
    want = _tensor([1.0, 2.0], atol=1e-3, rtol=0.0)
    assert verify.same_record(_tensor([1.0005, 2.0]), want)
    assert not verify.same_record(_tensor([1.01, 2.0]), want)
    # The worker's own (wide) tolerance is never used.
    assert not verify.same_record(_tensor([1.5, 2.0], atol=10.0), want)
    assert verify.check_test([], [want]) == "no value reached the kit's assertion helpers"
    assert "2 values checked" in verify.check_test([want, want], [want])


def test_a_pass_counts_only_with_matching_records():
    reference = {
        "exercises": [{"name": "custom_collate_fn", "tests": {"t::a": "passed", "t::b": "passed"}}]
    }
    want = {"t::a": [_tensor([1.0])]}  # t::b records nothing: unverifiable
    worker = {
        "exercises": [{"name": "custom_collate_fn", "tests": {"t::a": "passed", "t::b": "passed"}}]
    }
    exercises, verified = verify.verify(worker, {"t::a": [_tensor([1.0])]}, reference, want)
    assert (exercises["custom_collate_fn"].status, verified) == ("solved", 1)
    exercises, verified = verify.verify(worker, {}, reference, want)  # a pass without records
    assert (exercises["custom_collate_fn"].status, verified) == ("failing", 0)
    assert "not verified" in exercises["custom_collate_fn"].message
    only_b = {"exercises": [{"name": "custom_collate_fn", "tests": {"t::b": "passed"}}]}
    exercises, _ = verify.verify(only_b, {}, reference, want)  # unverifiable passes alone
    assert exercises["custom_collate_fn"].status == "failing"


def test_importing_or_copying_the_reference_is_flagged(tmp_path):
    assert verify.flags(HOSTILE / "reexport.py", ROOT / "reference")
    copy = tmp_path / "copy.py"
    shutil.copy(ROOT / "reference" / "collate.py", copy)
    assert "copy of the kit's reference/collate.py" in verify.flags(copy, ROOT / "reference")[0]
    assert verify.flags(HOSTILE / "orphans.py", ROOT / "reference") == []


def test_an_ftkit_init_folder_is_not_flagged_but_reference_exercises_are(tmp_path):
    """The stubs `ftkit init` writes import the book's tooling from `reference` (evaluation.py,
    training.py): kept as they are, nothing is flagged; the same import in another file, or an
    exercise imported from `reference`, is."""
    from ftkit.commands.init import files_to_write

    mine = tmp_path / "mine"
    mine.mkdir()
    for name, text in files_to_write().items():
        (mine / name).write_text(text, encoding="utf-8")
    assert verify.flags(mine, ROOT / "reference", EXERCISES) == []
    (mine / "generation.py").write_text("from reference.generation import generate\n")
    assert verify.flags(mine, ROOT / "reference", EXERCISES) == [
        "generation.py:1 uses the kit's 'reference'"
    ]
    (mine / "generation.py").unlink()
    (mine / "training.py").write_text("from reference.training import calc_loss_batch\n")
    assert verify.flags(mine, ROOT / "reference", EXERCISES)


def test_a_limits_verdict_names_the_test_that_was_running():
    outcome = Outcome(-9, "memory limit 4 GB exceeded", "", 1.0, 1.0, 0, True)
    running = "tests/book/test_collate.py::test_padding[2]"
    checked = Checked(outcome, None, {}, running)
    assert verdict_of(checked, [], Settings()) == "memory limit 4 GB exceeded in test_padding[2]"
    assert verdict_of(Checked(outcome, None, {}, ""), [], Settings()).endswith("exceeded")


def test_check_sandbox_takes_paths_only(capsys):
    from ftkit.check.run import check_once

    code = check_once("ftkit.adapters.llms_from_scratch", None, None, None, sandbox=True)
    assert code == 2 and "give the path of your" in capsys.readouterr().err


def _goldens() -> str:
    h = hashlib.sha256()
    for path in sorted(GOLDEN.glob("*.json")):
        h.update(path.read_bytes())
    return h.hexdigest()


def _sleepers() -> int:
    out = subprocess.run(["pgrep", "-f", "sleep 1000"], capture_output=True, text=True).stdout
    return len(out.split())


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    if bwrap() is None:
        pytest.skip("bubblewrap (bwrap) is not installed: apt-get install bubblewrap")
    subs = tmp_path_factory.mktemp("submissions")
    for path in HOSTILE.glob("*.py"):
        shutil.copy(path, subs / path.name)
    shutil.copy(ROOT / "reference" / "collate.py", subs / "copy.py")
    honest = (ROOT / "reference" / "collate.py").read_text(encoding="utf-8")
    (subs / "honest.py").write_text(honest + "# written by a learner who read the book closely\n")
    out = tmp_path_factory.mktemp("grades")
    before, sleepers = _goldens(), _sleepers()
    argv = [sys.executable, "-m", "ftkit", "grade", str(subs), "--out", str(out), "--jobs", "2"]
    argv += ["--stage", "collate", "--wall-s", str(WALL_S), "--output-mb", "8", "--memory-gb", "4"]
    argv += ["--cpu-s", str(CPU_S)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = {p.parent.name: json.loads(p.read_text()) for p in out.glob("*/grade.json")}
    return out, rows, before, sleepers, done.stdout


def _results(out: Path, name: str) -> dict:
    return json.loads((out / name / "results.json").read_text())


@pytest.mark.grade
@pytest.mark.parametrize("counter", ["cgroup", "proc"])
def test_the_cpu_limit_is_the_whole_commands(tmp_path, monkeypatch, counter):
    """Busy children each far under a per-process CPU limit are stopped together: summed by a
    cpuacct cgroup, or (without cgroups) from the process tree in /proc."""
    if bwrap() is None:
        pytest.skip("bubblewrap (bwrap) is not installed: apt-get install bubblewrap")
    if counter == "cgroup" and not os.access(sandbox.CGROUPS / "cpuacct", os.W_OK):
        pytest.skip("needs a writable cpuacct cgroup (root)")
    if counter == "proc":
        monkeypatch.setattr(sandbox, "make_cgroups", lambda slot, limits: {})
    spin = "import subprocess, sys; c = [subprocess.Popen([sys.executable, '-c', 'while 1: pass']) for _ in range(4)]; c[0].wait()"
    limits = Limits(cpu_s=3, wall_s=30)
    outcome = sandbox.run([sys.executable, "-c", spin], tmp_path, env={}, limits=limits, slot=99)
    assert outcome.limit == "CPU limit 3 s exceeded", outcome
    assert outcome.outlived == 0


@pytest.mark.grade
def test_the_honest_submission_gets_its_full_score(graded):
    out, rows, *_ = graded
    results = _results(out, "honest.py")
    assert results["score"] == 3.0 and [t["name"] for t in results["tests"]] == COLLATE
    assert rows["honest.py"]["verdict"] == ""


@pytest.mark.grade
@pytest.mark.parametrize(
    "name, verdict",
    [
        ("exit0.py", "crashed"),
        ("own_results.py", ""),
        ("classify_patch.py", ""),
        ("asserts_patch.py", ""),
        ("reexport.py", "flagged"),
        ("copy.py", "flagged"),
        ("golden_write.py", ""),
        ("remount.py", ""),
        ("memory.py", "memory limit 4 GB exceeded in test_"),
        ("orphans.py", ""),
        ("flood.py", "output limit 8 MB exceeded"),
        ("alarm.py", (f"wall limit {WALL_S} s exceeded", f"CPU limit {CPU_S} s exceeded")),
        ("cpu_fork.py", f"CPU limit {CPU_S} s exceeded in test_"),
        ("classbody.py", "crashed"),
    ],
)
def test_no_wrong_submission_gets_a_point(graded, name, verdict):
    out, rows, *_ = graded
    assert _results(out, name)["score"] == 0.0, _results(out, name)
    assert rows[name]["verdict"].startswith(verdict), rows[name]["verdict"]


@pytest.mark.grade
def test_a_forged_report_is_not_verified(graded):
    out, *_ = graded
    (test,) = _results(out, "own_results.py")["tests"]
    assert "not verified" in test["output"] and test["score"] == 0.0


@pytest.mark.grade
def test_the_answer_key_and_the_machine_are_untouched(graded):
    out, rows, before, sleepers, _ = graded
    assert _goldens() == before
    assert _sleepers() == sleepers  # the orphans died with their sandbox
    assert all(row["outlived"] == 0 for row in rows.values())


@pytest.mark.grade
def test_the_class_summary(graded):
    out, rows, *_ = graded
    lines = (out / "summary.csv").read_text().splitlines()
    assert lines[0].split(",")[:4] == ["submission", "score", "max_score", "verdict"]
    assert len(lines) == 1 + len(rows) == 16
    html = (out / "summary.html").read_text()
    assert html.count("<img") == 3


@pytest.fixture(scope="module")
def sandboxed_check(tmp_path_factory):
    """`ftkit check --sandbox` as a learner runs it (its own cache: one reference run)."""
    if bwrap() is None:
        pytest.skip("bubblewrap (bwrap) is not installed: apt-get install bubblewrap")
    env = {**os.environ, "FTKIT_HOME": str(tmp_path_factory.mktemp("ftkit-home"))}

    def check(path: Path, *options: str) -> subprocess.CompletedProcess:
        argv = [sys.executable, "-m", "ftkit", "check", "--impl", str(path), "--stage", "collate"]
        return subprocess.run(
            [*argv, *options], capture_output=True, text=True, env=env, timeout=600
        )

    return check


@pytest.mark.grade
def test_check_sandbox_prints_the_verified_table(sandboxed_check, tmp_path):
    honest = tmp_path / "mine.py"
    honest.write_text((ROOT / "reference" / "collate.py").read_text(encoding="utf-8") + "# mine\n")
    done = sandboxed_check(honest, "--sandbox", "--report", str(tmp_path / "r.json"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("ftkit check: ") == 1  # the worker's own table is left out
    assert "collate               3/3" in done.stdout and "Every exercise" in done.stdout
    report = json.loads((tmp_path / "r.json").read_text())
    assert {ex["name"]: ex["status"] for ex in report["exercises"]} == dict.fromkeys(
        COLLATE, "solved"
    )


@pytest.mark.grade
def test_check_sandbox_is_not_fooled_where_the_plain_check_is(sandboxed_check):
    """A forged classification passes the in-process check; --sandbox decides outside it."""
    plain = sandboxed_check(HOSTILE / "classify_patch.py")
    assert "collate               3/3" in plain.stdout, plain.stdout
    sandboxed = sandboxed_check(HOSTILE / "classify_patch.py", "--sandbox")
    assert sandboxed.returncode == 1, sandboxed.stdout + sandboxed.stderr
    assert "collate               0/3" in sandboxed.stdout
    assert "Next: fix `custom_collate_draft_1`" in sandboxed.stdout
