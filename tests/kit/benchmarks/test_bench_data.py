"""Data benchmarks: collating a real batch (book §7.3) and preparing the training set (book §7.2-7.3)."""

from __future__ import annotations

import pytest

from ftkit.data.instruction import load_instruction_data
from ftkit.io.tokenizer import get_tokenizer
from reference.collate import custom_collate_fn
from reference.instruction_data import InstructionDataset, split_data


@pytest.fixture(scope="module")
def train_set():
    train, _, _ = split_data(load_instruction_data())
    return train


def test_collate(benchmark, train_set):
    dataset = InstructionDataset(train_set[:8], get_tokenizer())
    batch = [dataset[i] for i in range(8)]
    inputs, targets = benchmark(custom_collate_fn, batch)
    benchmark.extra_info.update(kind="collate", batch_shape=list(inputs.shape))
    assert inputs.shape == targets.shape and inputs.shape[0] == 8


def test_prepare_training_set(benchmark, train_set):
    tokenizer = get_tokenizer()
    dataset = benchmark.pedantic(InstructionDataset, args=(train_set, tokenizer), rounds=3)
    benchmark.extra_info.update(kind="prepare", entries=len(dataset))
    assert len(dataset) == 935
