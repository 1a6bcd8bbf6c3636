"""`ftkit check` on learners' code as it comes: scripts, notebooks, renamed or reordered
parameters, a config dataclass, a bug that other exercises depend on.

Each test writes a small implementation into tmp_path, runs the real command with
`--report` and asserts the exact status of each exercise it provides.
"""

from __future__ import annotations

import json
import textwrap
import time
from pathlib import Path

import pytest

from tests.kit.test_check_learners import check, write

# Each test runs `ftkit check` in a child process: their own CI step (-m checker).
pytestmark = pytest.mark.checker

TIMES: dict[str, float] = {}

COLLATE_BODY = """
    batch_max_length = max(len(item) + 1 for item in batch)
    inputs_lst, targets_lst = [], []
    for item in batch:
        new_item = item.copy()
        new_item += [pad_token_id]
        padded = new_item + [pad_token_id] * (batch_max_length - len(new_item))
        inputs = torch.tensor(padded[:-1])
        targets = torch.tensor(padded[1:])
        mask = targets == pad_token_id
        indices = torch.nonzero(mask).squeeze()
        if indices.numel() > 1:
            targets[indices[1:]] = ignore_index
        if {limit} is not None:
            inputs = inputs[:{limit}]
            targets = targets[:{limit}]
        inputs_lst.append(inputs)
        targets_lst.append(targets)
    return torch.stack(inputs_lst).to(device), torch.stack(targets_lst).to(device)
"""


def collate_source(limit: str) -> str:
    head = (
        "def custom_collate_fn(batch, pad_token_id=50256, ignore_index=-100, "
        f"{limit}=None, device='cpu'):"
    )
    return head + textwrap.indent(textwrap.dedent(COLLATE_BODY.format(limit=limit)), "    ")


FORMAT_INPUT = """
def format_input(entry):
    instruction_text = (
        f"Below is an instruction that describes a task. "
        f"Write a response that appropriately completes the request."
        f"\\n\\n### Instruction:\\n{entry['instruction']}"
    )
    input_text = f"\\n\\n### Input:\\n{entry['input']}" if entry["input"] else ""
    return instruction_text + input_text
"""

DATASET = """
class InstructionDataset(Dataset):
    def __init__(self, data, tokenizer):
        self.data = data
        self.encoded_texts = []
        for entry in data:
            instruction_plus_input = format_input(entry)
            response_text = f"\\n\\n### Response:\\n{entry['output']}"
            full_text = instruction_plus_input + response_text
            self.encoded_texts.append(tokenizer.encode(full_text))

    def __getitem__(self, index):
        return self.encoded_texts[index]

    def __len__(self):
        return len(self.data)
"""


def run_check(tmp_path: Path, label: str, impl: str, *args: str) -> tuple[dict, str, int]:
    """`ftkit check --impl IMPL --report`: (status by exercise, stdout, exit status)."""
    report = tmp_path / "report.json"
    start = time.monotonic()
    result = check(tmp_path, "--impl", impl, "--report", str(report), *args)
    TIMES[label] = time.monotonic() - start
    out = result.stdout + result.stderr
    if not report.exists():
        return {}, out, result.returncode
    records = json.loads(report.read_text())["exercises"]
    statuses = {r["name"]: r for r in records if r["status"] != "not provided"}
    return statuses, out, result.returncode


def status(statuses: dict) -> dict[str, str]:
    return {name: r["status"] for name, r in statuses.items() if not name.startswith("Exercise")}


def test_a_renamed_keyword_is_its_own_outcome_and_a_keyword_map_solves_it(tmp_path):
    write(tmp_path, "renamed_learner.py", "import torch\n\n" + collate_source("allow_max_length"))
    statuses, out, code = run_check(tmp_path, "renamed keyword", "renamed_learner")
    assert status(statuses) == {"custom_collate_fn": "signature differs"}, out
    assert statuses["custom_collate_fn"]["signature"] == (
        "signature differs: yours (batch, pad_token_id, ignore_index, allow_max_length, device)"
        " — the book's (batch, pad_token_id, ignore_index, allowed_max_length, device)"
    )
    assert "Next: fix the signature of `custom_collate_fn`" in out
    assert code == 1

    mapped = 'KEYWORDS = {"custom_collate_fn": {"allowed_max_length": "allow_max_length"}}\n'
    write(
        tmp_path,
        "mapped_learner.py",
        "import torch\n" + mapped + collate_source("allow_max_length"),
    )
    statuses, out, code = run_check(tmp_path, "renamed keyword + KEYWORDS", "mapped_learner")
    assert status(statuses) == {"custom_collate_fn": "solved"}, out


REORDERED = """
import torch


def calc_loss_batch(input_batch, target_batch, device, model):  # device before model
    input_batch, target_batch = input_batch.to(device), target_batch.to(device)
    logits = model(input_batch)
    return torch.nn.functional.cross_entropy(logits.flatten(0, 1), target_batch.flatten())
"""


def test_reordered_parameters_fail_nothing_but_the_signature_is_reported(tmp_path):
    write(tmp_path, "reordered_learner.py", REORDERED)
    statuses, out, _ = run_check(tmp_path, "reordered parameters", "reordered_learner")
    assert status(statuses) == {"calc_loss_batch": "signature differs"}, out
    assert set(statuses["calc_loss_batch"]["tests"].values()) == {"passed"}, out
    assert "yours (input_batch, target_batch, device, model)" in out


CONFIG_DATACLASS = """
from dataclasses import dataclass

import reference.model as book


@dataclass
class GPTConfig:
    vocab_size: int
    context_length: int
    emb_dim: int
    n_heads: int
    n_layers: int
    drop_rate_emb: float
    drop_rate_attn: float
    drop_rate_shortcut: float
    qkv_bias: bool


def make_config(book_cfg: dict) -> GPTConfig:
    rate = book_cfg["drop_rate"]
    keep = {k: v for k, v in book_cfg.items() if k != "drop_rate"}
    return GPTConfig(**keep, drop_rate_emb=rate, drop_rate_attn=rate, drop_rate_shortcut=rate)


def as_dict(cfg: GPTConfig) -> dict:
    return {
        "vocab_size": cfg.vocab_size,
        "context_length": cfg.context_length,
        "emb_dim": cfg.emb_dim,
        "n_heads": cfg.n_heads,
        "n_layers": cfg.n_layers,
        "drop_rate": cfg.drop_rate_emb,
        "qkv_bias": cfg.qkv_bias,
    }


class FeedForward(book.FeedForward):
    def __init__(self, cfg: GPTConfig):
        super().__init__(as_dict(cfg))


class TransformerBlock(book.TransformerBlock):
    def __init__(self, cfg: GPTConfig):
        super().__init__(as_dict(cfg))


class GPTModel(book.GPTModel):
    def __init__(self, cfg: GPTConfig):
        super().__init__(as_dict(cfg))
"""


def test_a_config_dataclass_with_make_config_passes_the_model_tests(tmp_path):
    write(tmp_path, "dataclass_learner.py", CONFIG_DATACLASS)
    statuses, out, code = run_check(tmp_path, "config dataclass + make_config", "dataclass_learner")
    assert status(statuses) == {
        "FeedForward": "solved",
        "TransformerBlock": "solved",
        "GPTModel": "solved",
    }, out
    assert code == 0, out


def test_a_bug_in_format_input_names_it_and_blocks_the_dataset(tmp_path):
    buggy = FORMAT_INPUT.replace("a task. ", "a task.")  # the missing space
    source = "from torch.utils.data import Dataset\n" + buggy + DATASET
    write(tmp_path, "buggy_learner.py", source)
    statuses, out, _ = run_check(tmp_path, "bug in format_input", "buggy_learner")
    assert status(statuses) == {"format_input": "failing", "InstructionDataset": "blocked"}, out
    assert statuses["InstructionDataset"]["blocked_by"] == ["format_input"]
    assert "Next: fix `format_input`" in out
    # The dataset's own failure shows text, not token ids.
    dataset = statuses["InstructionDataset"]["message"]
    assert "expected 'task. Write', got 'task.Write'" in dataset, dataset
    assert "strings differ at character" in statuses["format_input"]["message"]


DOWNLOADING_SCRIPT = """
import json
import urllib.request

import torch
from torch.utils.data import Dataset

URL = "http://127.0.0.1:9/instruction-data.json"  # nothing listens: a download would fail


def download_and_load_file(url):
    with urllib.request.urlopen(url) as response:
        return json.loads(response.read().decode("utf-8"))


data = download_and_load_file(URL)
print("Number of entries:", len(data))
"""


def test_a_script_that_downloads_on_import_loads_its_definitions_only(tmp_path):
    source = (
        DOWNLOADING_SCRIPT + FORMAT_INPUT + DATASET + "\n" + collate_source("allowed_max_length")
    )
    write(tmp_path, "ch07_script.py", source)
    statuses, out, code = run_check(
        tmp_path, "script (downloads on import)", str(tmp_path / "ch07_script.py")
    )
    assert code != 2, out  # loaded; kit extras (style=...) fail, the book code passes
    assert status(statuses) == {
        "format_input": "solved",
        "InstructionDataset": "solved",
        "custom_collate_fn": "solved",
    }, out
    assert "skipped 2 statements no definition needs" in out, out
    assert "ch07_script.py:15: data = download_and_load_file(URL)" in out, out


def notebook(cells: list[str]) -> str:
    return json.dumps(
        {
            "nbformat": 4,
            "nbformat_minor": 5,
            "metadata": {},
            "cells": [
                {"cell_type": "markdown", "metadata": {}, "source": ["# Chapter 7"]},
                *(
                    {
                        "cell_type": "code",
                        "metadata": {},
                        "execution_count": None,
                        "outputs": [],
                        "source": cell.strip().splitlines(keepends=True),
                    }
                    for cell in cells
                ),
            ],
        }
    )


def test_a_chapter_7_notebook_checks_without_an_adapter(tmp_path):
    cells = [
        "!pip install tiktoken\n%matplotlib inline",
        DOWNLOADING_SCRIPT,
        FORMAT_INPUT,
        "print(format_input(data[50]))",
        "from torch.utils.data import Dataset\n" + DATASET,
        "import torch\n" + collate_source("allowed_max_length"),
        "for epoch in range(2):\n    print(epoch)",
    ]
    (tmp_path / "ch07.ipynb").write_text(notebook(cells), encoding="utf-8")
    statuses, out, code = run_check(tmp_path, "ch. 7 notebook", str(tmp_path / "ch07.ipynb"))
    assert code != 2, out
    assert status(statuses) == {
        "format_input": "solved",
        "InstructionDataset": "solved",
        "custom_collate_fn": "solved",
    }, out
    assert "(cell 4):1: print(format_input(data[50]))" in out, out


def test_execute_runs_a_notebook_top_to_bottom(tmp_path):
    pytest.importorskip("IPython")
    computed = FORMAT_INPUT.replace(
        'f"Below is an instruction that describes a task. "', "PREAMBLE +"
    ).replace('f"Write a response that appropriately completes the request."', "")
    cells = [
        "%load_ext autoreload",  # a magic: runs under --execute
        'PREAMBLE = " ".join(["Below is an instruction that describes a task.",'
        ' "Write a response that appropriately completes the request."])',
        computed,
    ]
    (tmp_path / "small.ipynb").write_text(notebook(cells), encoding="utf-8")
    # Statement by statement: PREAMBLE is computed by a call that format_input needs, so it runs.
    statuses, out, _ = run_check(
        tmp_path, "small notebook, statement by statement", str(tmp_path / "small.ipynb")
    )
    assert status(statuses) == {"format_input": "solved"}, out
    assert "and 1 statements computing values they need" in out, out
    statuses, out, code = run_check(
        tmp_path, "small notebook, --execute", str(tmp_path / "small.ipynb"), "--execute"
    )
    assert status(statuses) == {"format_input": "solved"}, out
    assert "ran small.ipynb top to bottom (--execute)" in out
    assert code != 2, out


def test_zz_report_times():
    """Print the measured times (pytest -s shows them)."""
    for label, seconds in TIMES.items():
        print(f"ftkit check, {label}: {seconds:.1f} s")
