"""Properties of custom_collate_fn on random batches (book §7.3), 50256 inside texts included."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.stage("collate")

PAD = 50256
IGNORE = -100

# Token ids favour the end-of-text id now and then, so texts containing it are common.
token = st.one_of(st.integers(0, PAD), st.just(PAD))
item = st.lists(token, min_size=1, max_size=300)
batches = st.lists(item, min_size=1, max_size=8)
limits = st.one_of(st.none(), st.integers(1, 400))


@pytest.mark.exercise("custom_collate_fn")
@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batch=batches, limit=limits)
def test_collate_properties(impl, batch, limit):
    inputs, targets = impl.custom_collate_fn(batch, allowed_max_length=limit)
    width = max(len(x) for x in batch)  # longest item + 1, minus the dropped last column
    if limit is not None:
        width = min(width, limit)

    assert inputs.shape == targets.shape == (len(batch), width), "shape: (batch, longest item)"
    assert inputs.dtype == targets.dtype == torch.long, "dtype must be int64"
    assert inputs.device.type == targets.device.type == "cpu", "device must be the requested one"

    for row, text in enumerate(batch):
        padded = text + [PAD] * (max(len(x) for x in batch) + 1 - len(text))
        want_inputs = torch.tensor(padded[:-1][:width])
        want_targets = torch.tensor(padded[1:][:width])
        assert torch.equal(inputs[row], want_inputs), f"row {row}: inputs are the padded text"

        kept = targets[row] != IGNORE
        assert torch.equal(targets[row][kept], want_targets[kept]), (
            f"row {row}: targets that are not ignored are the padded text shifted by one"
        )
        if width > 1:
            assert torch.equal(targets[row, :-1][kept[:-1]], inputs[row, 1:][kept[:-1]]), (
                f"row {row}: targets[:, :-1] == inputs[:, 1:] where not ignored"
            )

        eot = (want_targets == PAD).nonzero().flatten().tolist()
        ignored = (~kept).nonzero().flatten().tolist()
        if eot:
            first = eot[0]
            assert targets[row, first] == PAD, f"row {row}: the first end-of-text target is kept"
            assert ignored == eot[1:], (
                f"row {row}: exactly the end-of-text targets after the first become -100"
            )
            assert (targets[row] == PAD).sum() == 1, f"row {row}: one end-of-text target left"
        else:
            # Truncation cut off every end-of-text: nothing to ignore in this row.
            assert ignored == [], f"row {row}: -100 only appears after the first end-of-text"


@pytest.mark.exercise("custom_collate_fn")
@pytest.mark.beyond_book
@pytest.mark.book_exercise("7.2")
@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    data=st.lists(
        st.tuples(item, st.integers(1, 300)).map(lambda p: (min(p[1], len(p[0])), p[0])),
        min_size=1,
        max_size=8,
    ),
    limit=limits,
)
def test_prompt_masking_only_adds_ignored_positions(impl, data, limit):
    """Exercise 7.2: masking the prompt changes nothing but targets before prompt_length - 1."""
    masked_inputs, masked = impl.custom_collate_fn(data, allowed_max_length=limit)
    plain_inputs, plain = impl.custom_collate_fn([ids for _, ids in data], allowed_max_length=limit)
    assert torch.equal(masked_inputs, plain_inputs), "masking the prompt never changes inputs"
    for row, (prompt_length, _) in enumerate(data):
        cut = min(prompt_length - 1, masked.shape[1])
        assert (masked[row, :cut] == IGNORE).all(), f"row {row}: prompt targets are -100"
        assert torch.equal(masked[row, cut:], plain[row, cut:]), (
            f"row {row}: the response targets are the same as without masking"
        )
