"""`ftkit check`'s exit status and reports agree with its table (real runs in a child process).

Book-only code whose kit-extra checks fail exits 0; one failing exercise exits 1; a learner's
fresh `ftkit init` folder (all not started) exits 0; a report lands in a folder that does not
exist yet, and one that cannot be written makes the run fail.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.kit.test_check_learners import env_with
from tests.kit.test_check_sources import COLLATE_BODY

pytestmark = pytest.mark.checker  # each runs `ftkit check` in a child process (-m checker)

ROOT = Path(__file__).resolve().parents[2]

# The book's own custom_collate_fn (§7.3, listing 7.5), exactly: none of the kit's extras.
BOOK_COLLATE = (
    "import torch\n\n\n"
    "def custom_collate_fn(\n"
    "    batch, pad_token_id=50256, ignore_index=-100, allowed_max_length=None, device='cpu'\n"
    "):" + textwrap.indent(textwrap.dedent(COLLATE_BODY.format(limit="allowed_max_length")), "    ")
)

# Draft 1 with one bug: pads with zeros instead of pad_token_id.
BUGGY_DRAFT_1 = '''

def custom_collate_draft_1(batch, pad_token_id=50256, device="cpu"):
    """Mine (book §7.3), with a bug."""
    import torch

    width = max(len(item) + 1 for item in batch)
    rows = [list(item) + [0] * (width - len(item)) for item in batch]
    return torch.tensor([row[:-1] for row in rows]).to(device)
'''


def ftkit(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """`ftkit ARGS` run in `cwd` (a learner's folder), with this checkout's kit."""
    command = [sys.executable, "-m", "ftkit.cli", *args]
    return subprocess.run(
        command, cwd=cwd, env=env_with(ROOT), capture_output=True, text=True, timeout=300
    )


def table_row(stdout: str, stage: str) -> list[str]:
    return next(line.split() for line in stdout.splitlines() if line.startswith(f"{stage} "))


def test_book_only_code_failing_kit_extras_exits_0_and_its_report_lands(tmp_path):
    (tmp_path / "book_collate.py").write_text(BOOK_COLLATE, encoding="utf-8")
    report = tmp_path / "out" / "deeper" / "results.json"  # no such folder yet
    result = ftkit(
        tmp_path,
        "check",
        "--impl",
        "book_collate.py",
        "--format",
        "gradescope",
        "--report",
        str(report),
    )
    output = result.stdout + result.stderr
    assert table_row(result.stdout, "collate")[1:3] == ["1/3", "0"], output  # solved, 0 failing
    assert result.returncode == 0, output
    tests = {t["name"]: t for t in json.loads(report.read_text(encoding="utf-8"))["tests"]}
    assert tests["custom_collate_fn"]["score"] == 1.0
    assert "failure" not in tests["custom_collate_fn"]["output"]
    assert "GPTModel" not in tests  # not provided: not counted


def test_a_report_that_cannot_be_written_fails_the_run(tmp_path):
    (tmp_path / "out").write_text("a file, not a folder", encoding="utf-8")
    result = ftkit(  # every test passes: only the report can fail the run
        tmp_path,
        *("check", "--impl", "reference", "--stage", "collate", "-k", "draft_1"),
        *("--report", str(tmp_path / "out" / "results.json")),
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "could not write the report" in result.stdout
    assert " failed" not in result.stdout


def test_an_init_folder_checks_itself_not_started_0_then_one_bug_1(tmp_path):
    assert ftkit(tmp_path, "init", "mine").returncode == 0
    folder = tmp_path / "mine"
    fresh = ftkit(folder, "check", "--stage", "collate")  # no --impl: ftkit.toml
    output = fresh.stdout + fresh.stderr
    assert fresh.returncode == 0, output
    assert table_row(fresh.stdout, "collate")[1:5] == ["0/3", "0", "0", "3"], output
    assert str(folder.resolve()) in fresh.stdout  # the header names the learner's folder

    collate = folder / "collate.py"
    source = collate.read_text(encoding="utf-8")
    start = source.index("def custom_collate_draft_1(")
    end = source.index("\ndef ", start + 1)
    collate.write_text(source[:start] + BUGGY_DRAFT_1.strip() + "\n\n" + source[end:], "utf-8")
    buggy = ftkit(folder, "check", "--stage", "collate")
    output = buggy.stdout + buggy.stderr
    assert buggy.returncode == 1, output
    assert table_row(buggy.stdout, "collate")[1:3] == ["0/3", "1"], output
    assert "Next: fix `custom_collate_draft_1`" in buggy.stdout
