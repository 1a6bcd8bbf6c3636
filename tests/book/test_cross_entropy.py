"""Why -100 works: cross_entropy ignores those targets (book §7.3), and so do collated batches."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ftkit.asserts import assert_close

pytestmark = pytest.mark.stage("training")


def test_cross_entropy_demo_values(golden):
    g = golden("collate")
    why = "torch.nn.functional.cross_entropy averages over the targets (book §7.3)"
    loss_1 = F.cross_entropy(torch.tensor(g["ce_logits_1"]), torch.tensor(g["ce_targets_1"]))
    assert_close(loss_1, g["ce_loss_1"], name="loss_1", atol=5e-5, why=why)
    loss_2 = F.cross_entropy(torch.tensor(g["ce_logits_2"]), torch.tensor(g["ce_targets_2"]))
    assert_close(loss_2, g["ce_loss_2"], name="loss_2", atol=5e-5, why=why)
    loss_3 = F.cross_entropy(torch.tensor(g["ce_logits_2"]), torch.tensor(g["ce_targets_3"]))
    assert_close(
        loss_3,
        g["ce_loss_3"],
        name="loss_3",
        atol=5e-5,
        why="the third target is -100, the default ignore_index, so it drops out (book §7.3)",
    )


@pytest.mark.exercise("custom_collate_fn")
def test_collated_padding_does_not_change_the_loss(impl):
    """Loss over a padded batch equals the loss over each text + its one end-of-text target."""
    texts = [[11, 12, 13, 14, 15, 16], [21, 22], [31, 32, 33]]
    inputs, targets = impl.custom_collate_fn(texts)
    torch.manual_seed(123)
    logits = torch.randn(*inputs.shape, 50257)
    batch_loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten())

    # By hand: row i has len(text) real targets (text[1:] + end-of-text).
    losses = []
    for row, text in enumerate(texts):
        wanted = torch.tensor(text[1:] + [50256])
        losses.append(F.cross_entropy(logits[row, : len(text)], wanted, reduction="sum"))
    by_hand = torch.stack(losses).sum() / sum(len(t) for t in texts)
    assert_close(
        batch_loss,
        by_hand.item(),
        name="batch loss",
        atol=1e-5,
        why="padding targets are -100 and ignored; only the first end-of-text counts (book §7.3)",
    )
