"""Next-token loss and the training loop (book §5.1-5.2, §7.6) on a tiny model and real instruction batches.

The loss functions are compared with the book's own package; the loop is checked
for the book's printed format and for learning at all. (Resuming is the kit's engine:
tests/kit/test_engine.py.)
"""

from __future__ import annotations

import math
import re
from functools import partial

import pytest
import torch
from book_package import book_module
from torch.utils.data import DataLoader

from ftkit.asserts import (
    assert_close,
    assert_equal,
    assert_tensor_equal,
    plot_text,
    plotted_curves,
)
from ftkit.check.logs import lines_carrying, style_note
from ftkit.data.instruction import load_instruction_data
from ftkit.io.tokenizer import get_tokenizer
from ftkit.presets import get_config

pytestmark = pytest.mark.stage("training")

book5 = book_module("ch05")

MAX_LEN = 24  # truncate instruction examples: enough text to learn from, fast on CPU
LOG_LINE = re.compile(
    r"^Ep (\d+) \(Step (\d{6})\): Train loss (\d+\.\d{3}), Val loss (\d+\.\d{3})$"
)
START = "Below is an instruction"


@pytest.fixture(scope="module")
def tokenizer():
    return get_tokenizer()


@pytest.fixture(scope="module")
def datasets(ref, tokenizer):
    """The first instruction entries of the book's data set (§7.2), tokenized (§7.3)."""
    data = load_instruction_data()
    return ref.InstructionDataset(data[:30], tokenizer), ref.InstructionDataset(
        data[-8:], tokenizer
    )


def loader(ref, dataset, batch_size: int = 4, shuffle: bool = False, n: int | None = None):
    items = [dataset[i] for i in range(len(dataset) if n is None else n)]
    return DataLoader(
        items,
        batch_size=batch_size,
        shuffle=shuffle,
        drop_last=shuffle,
        collate_fn=partial(ref.custom_collate_fn, allowed_max_length=MAX_LEN),
    )


def tiny_model(ref, seed: int = 123, drop_rate: float = 0.1):
    """A 1-layer GPT with GPT-2's vocabulary (real token ids), small enough to train in a blink."""
    torch.manual_seed(seed)
    cfg = get_config(
        "tiny", emb_dim=16, n_layers=1, n_heads=2, context_length=32, drop_rate=drop_rate
    )
    return ref.GPTModel(cfg)


def first_batch(ref, datasets):
    return next(iter(loader(ref, datasets[0])))


# --- §5.1: the loss ----------------------------------------------------------------------


@pytest.mark.exercise("calc_loss_loader")
def test_untrained_loss_is_near_log_vocabulary_size(impl, ref, datasets, golden):
    g = golden("training")
    model = tiny_model(ref).eval()
    data = loader(ref, datasets[0])
    loss = impl.calc_loss_loader(data, model=model, device="cpu", num_batches=2)
    with torch.no_grad():
        batches = [ref.calc_loss_batch(x, y, model, "cpu").item() for x, y in list(data)[:2]]
    assert_close(
        loss,
        sum(batches) / 2,
        name="calc_loss_loader(num_batches=2)",
        atol=1e-5,
        why="the mean of calc_loss_batch over the first num_batches batches: "
        "total_loss / num_batches (§5.1)",
    )
    assert_close(
        loss,
        math.log(g["vocab_size"]),
        name="untrained loss",
        atol=0.5,
        why="a random model spreads probability ~evenly over 50,257 tokens: loss ~ ln(50257) = "
        f"10.82 (the book's untrained 124M model gives {g['untrained_train_loss_124m']}, §5.1)",
    )


@pytest.mark.exercise("calc_loss_batch")
def test_calc_loss_batch_equals_the_book_packages(impl, ref, datasets):
    model = tiny_model(ref).eval()
    inputs, targets = first_batch(ref, datasets)
    with torch.no_grad():
        ours = impl.calc_loss_batch(inputs, target_batch=targets, model=model, device="cpu")
        theirs = book5.calc_loss_batch(inputs, targets, model, "cpu")
    assert_tensor_equal(
        ours,
        theirs,
        name="loss",
        why="mean cross-entropy of the raw logits (cross_entropy applies log-softmax itself) over "
        "all (batch, token) positions (§5.1)",
    )


@pytest.mark.exercise("calc_loss_loader")
def test_calc_loss_loader_equals_the_book_packages(impl, ref, datasets):
    model = tiny_model(ref).eval()
    data = loader(ref, datasets[0])
    with torch.no_grad():
        theirs = book5.calc_loss_loader(data, model, "cpu", num_batches=3)
    assert_close(
        impl.calc_loss_loader(data, model=model, device="cpu", num_batches=3),
        theirs,
        name="loader loss",
        atol=1e-6,
        why="the mean of the first num_batches batch losses (§5.1)",
    )


@pytest.mark.exercise("calc_loss_batch")
def test_calc_loss_batch_ignores_targets_of_minus_100(impl, ref, datasets):
    model = tiny_model(ref).eval()
    inputs, targets = first_batch(ref, datasets)
    masked = torch.full_like(targets, -100)
    masked[0, 5] = targets[0, 5]
    with torch.no_grad():
        logits = model(inputs)
        loss = impl.calc_loss_batch(inputs, target_batch=masked, model=model, device="cpu")
    expected = torch.nn.functional.cross_entropy(logits[0, 5:6], targets[0, 5:6])
    assert_tensor_equal(
        loss,
        expected,
        name="loss with one unmasked target",
        atol=1e-6,
        why="cross_entropy skips targets equal to its ignore_index -100: padding and masked "
        "prompts do not count (§7.3)",
    )


@pytest.mark.exercise("calc_loss_loader")
def test_calc_loss_loader_averages_batch_losses_when_the_last_batch_is_smaller(impl, ref, datasets):
    model = tiny_model(ref).eval()
    data = loader(ref, datasets[0], n=10)  # batches of 4, 4 and 2
    with torch.no_grad():
        losses = [float(ref.calc_loss_batch(x, y, model, "cpu")) for x, y in data]
        sizes = [len(x) for x, _ in data]
        got = float(impl.calc_loss_loader(data, model=model, device="cpu"))
    by_example = sum(loss * n for loss, n in zip(losses, sizes)) / sum(sizes)
    if math.isclose(got, by_example, rel_tol=1e-6) and not math.isclose(
        by_example, sum(losses) / len(losses), rel_tol=1e-6
    ):
        raise AssertionError(
            f"loader loss {got:.5f} weights each batch loss by its number of examples: the "
            "book averages the batch losses, total_loss / num_batches, each batch counting once "
            "(§5.1)"
        )
    assert_close(got, sum(losses) / len(losses), name="loader loss (batches 4, 4, 2)", atol=1e-6)


@pytest.mark.exercise("calc_loss_loader")
def test_calc_loss_loader_of_an_empty_loader_is_nan(impl, ref):
    model = tiny_model(ref)
    loss = impl.calc_loss_loader(DataLoader([]), model=model, device="cpu")
    assert math.isnan(loss), f"an empty loader should give nan, as the book's (§5.1); got {loss}"


@pytest.mark.exercise("calc_loss_loader")
def test_num_batches_is_capped_at_the_loader_length(impl, ref, datasets):
    model = tiny_model(ref).eval()
    data = loader(ref, datasets[1])  # 2 batches
    assert_close(
        impl.calc_loss_loader(data, model=model, device="cpu", num_batches=100),
        impl.calc_loss_loader(data, model=model, device="cpu"),
        name="loss with num_batches=100",
        atol=1e-6,
        why="num_batches larger than the loader means all batches (§5.1)",
    )


@pytest.mark.exercise("evaluate_model")
def test_evaluate_model_scores_without_dropout_and_restores_training_mode(impl, ref, datasets):
    model = tiny_model(ref, drop_rate=0.5).train()
    train, val = loader(ref, datasets[0]), loader(ref, datasets[1])
    first = impl.evaluate_model(
        model, train_loader=train, val_loader=val, device="cpu", eval_iter=1
    )
    second = impl.evaluate_model(
        model, train_loader=train, val_loader=val, device="cpu", eval_iter=1
    )
    assert_equal(first, second, name="(train loss, val loss)", why="eval mode: no dropout (§5.2)")
    assert model.training, "evaluate_model must put the model back into training mode (§5.2)"


# --- §5.2: the loop -----------------------------------------------------------------------


def run(impl, ref, datasets, tokenizer, num_epochs):
    """Train the tiny model (seed 123, dropout on, shuffled batches) with AdamW as §5.2 does."""
    model = tiny_model(ref)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4, weight_decay=0.1)
    torch.manual_seed(123)
    train, val = loader(ref, datasets[0], shuffle=True, n=8), loader(ref, datasets[1])
    losses = impl.train_model_simple(
        model,
        train_loader=train,
        val_loader=val,
        optimizer=optimizer,
        device="cpu",
        num_epochs=num_epochs,
        eval_freq=1,
        eval_iter=1,
        start_context=START,
        tokenizer=tokenizer,
    )
    return model, optimizer, train, val, losses


@pytest.mark.exercise("generate_and_print_sample")
def test_generate_and_print_sample_prints_50_greedy_tokens_on_one_line(
    impl, ref, tokenizer, capsys
):
    model = tiny_model(ref)  # in training mode, with dropout: the sample must not use it
    impl.generate_and_print_sample(model, tokenizer=tokenizer, device="cpu", start_context=START)
    printed = capsys.readouterr().out
    assert printed.endswith("\n") and printed.count("\n") == 1, (
        f"one printed line expected (newlines replaced by spaces, §5.2); got {printed!r}"
    )
    ids = ref.text_to_token_ids(START, tokenizer)
    expected = ref.generate_text_simple(model.eval(), ids, 50, model.pos_emb.weight.shape[0])
    text = ref.token_ids_to_text(expected, tokenizer).replace("\n", " ")
    assert_equal(printed[:-1], text, name="sample", why="50 greedy tokens in eval mode (§5.2)")
    model.train()
    impl.generate_and_print_sample(model, tokenizer=tokenizer, device="cpu", start_context=START)
    capsys.readouterr()
    assert model.training, "generate_and_print_sample must put the model back in training mode"


@pytest.mark.exercise("train_model_simple")
def test_a_few_steps_lower_the_loss(impl, ref, datasets, tokenizer):
    model = tiny_model(ref)
    # 10x the book's lr 5e-4: a 16-wide 1-layer model needs bigger steps to move in 15 of them.
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3, weight_decay=0.1)
    torch.manual_seed(123)
    train = loader(ref, datasets[0], batch_size=2, shuffle=True)  # 15 batches
    val = loader(ref, datasets[1])
    before = ref.calc_loss_loader(train, model.eval(), "cpu")
    train_losses, _, tokens = impl.train_model_simple(
        model,
        train_loader=train,
        val_loader=val,
        optimizer=optimizer,
        device="cpu",
        num_epochs=1,
        eval_freq=7,
        eval_iter=1,
        start_context=START,
        tokenizer=tokenizer,
    )
    after = ref.calc_loss_loader(train, model.eval(), "cpu")
    assert after < before - 1.0, (
        f"15 AdamW steps (lr 5e-3) should lower the training loss by more than 1.0; "
        f"before {before:.3f}, after {after:.3f} (§5.2)"
    )
    assert_equal(len(train_losses), 3, name="evaluations at steps 0, 7, 14 (eval_freq=7)")
    assert tokens == sorted(tokens) and tokens[0] > 0, f"tokens seen must grow: {tokens}"


@pytest.mark.exercise("train_model_simple")
def test_train_model_simple_prints_the_books_lines(
    impl, ref, datasets, tokenizer, golden, capsys, record_property
):
    """Judged on the numbers each line prints; other wording is a style note, not a failure."""
    g = golden("training")
    assert LOG_LINE.match(g["first_log_line"]), "the pattern must match the book's own line"
    _, _, train, _, (train_losses, val_losses, _) = run(impl, ref, datasets, tokenizer, 1)
    lines = capsys.readouterr().out.splitlines()
    rows = [(1, i, t, v) for i, (t, v) in enumerate(zip(train_losses, val_losses, strict=True))]
    logs = lines_carrying(lines, rows)
    for i, line in enumerate(logs):
        assert line is not None, (
            f"no printed line carries log line {i}'s numbers: epoch 1, step {i:06d}, train loss "
            f"{train_losses[i]:.3f}, val loss {val_losses[i]:.3f} — the book prints "
            "f'Ep {epoch+1} (Step {global_step:06d}): Train loss {train_loss:.3f}, "
            f"Val loss {{val_loss:.3f}}' every eval_freq steps from step 0 (§5.2); printed {lines[:4]}"
        )
    note = style_note(logs, LOG_LINE, g["first_log_line"])
    if note:
        record_property("ftkit_style", note)
    samples = [line for line in lines if line not in logs and line.strip()]
    assert len(samples) == 1 and samples[0].startswith(START), (
        f"after the epoch one sample line continuing {START!r} is printed (§5.2); got {samples}"
    )


# --- the kit's guarantees: clear errors ---------------------------------------------------


def test_mismatched_batches_are_a_clear_error(ref, datasets):
    inputs, targets = first_batch(ref, datasets)
    with pytest.raises(ValueError, match="same \\(batch, tokens\\) shape"):
        ref.calc_loss_batch(inputs, targets[:, :-1], tiny_model(ref), "cpu")


def test_empty_training_loader_is_a_clear_error(ref, datasets, tokenizer):
    model = tiny_model(ref)
    optimizer = torch.optim.AdamW(model.parameters())
    with pytest.raises(ValueError, match="training loader has no batches"):
        ref.train_model_simple(
            model, DataLoader([]), DataLoader([]), optimizer, "cpu", 1, 1, 1, START, tokenizer
        )


def test_plot_losses_rejects_unequal_lengths(ref):
    with pytest.raises(ValueError, match="equally long"):
        ref.plot_losses([0, 1], [0, 10], [1.0], [1.0, 2.0])


@pytest.mark.exercise("plot_losses")
def test_plot_losses_draws_both_curves_against_epochs_and_tokens(impl, drawn_figure):
    epochs, tokens = [0.0, 0.5, 1.0], [0, 544, 1088]
    train, val = [2.6, 1.9, 1.2], [2.7, 2.0, 1.5]
    fig = drawn_figure(impl.plot_losses, epochs, tokens, train, val)
    ax1 = fig.axes[0]
    curves = plotted_curves(ax1)
    assert_equal(
        curves,
        {"training loss": train, "validation loss": val},
        name="curves on the epochs axis",
        why="the book plots both losses against epochs, labelled for the legend (§5.1)",
    )
    assert_equal(
        (plot_text(ax1.get_xlabel()), plot_text(ax1.get_ylabel())),
        ("epochs", "loss"),
        name="axis labels",
    )
    tops = [ax for ax in fig.axes[1:] if ax.get_xlabel()]
    assert_equal(
        [plot_text(ax.get_xlabel()) for ax in tops],
        ["tokens seen"],
        name="second x-axis",
        why="a twin x-axis shows tokens seen, aligned by an invisible copy of the curve (§5.1)",
    )


# --- the book's loop, step by step (issue 12: mistakes that still lower the loss) ----------


_BOOK_RUNS: dict = {}  # kit: (function, data) -> its run; the reference's is shared by tests


def book_run(train_model_simple, ref, datasets, tokenizer):
    """Two epochs of the tiny model through `train_model_simple`, seeded as §5.2 does.

    Each function's run is made once per data set: the two tests below compare the same runs
    (and with the reference as the implementation, impl's run is the reference's).
    """
    key = (train_model_simple, id(datasets))
    if key not in _BOOK_RUNS:
        _BOOK_RUNS[key] = _book_run(train_model_simple, ref, datasets, tokenizer)
    return _BOOK_RUNS[key]


def _book_run(train_model_simple, ref, datasets, tokenizer):
    model = tiny_model(ref)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4, weight_decay=0.1)
    torch.manual_seed(123)
    train, val = loader(ref, datasets[0], shuffle=True, n=8), loader(ref, datasets[1])
    return train_model_simple(model, train, val, optimizer, "cpu", 2, 1, 1, START, tokenizer)


@pytest.mark.exercise("train_model_simple")
def test_tokens_seen_are_the_books_count(impl, ref, datasets, tokenizer, capsys):
    *_, tokens = book_run(impl.train_model_simple, ref, datasets, tokenizer)
    *_, want = book_run(ref.train_model_simple, ref, datasets, tokenizer)
    capsys.readouterr()
    assert_equal(
        tokens,
        want,
        name="track_tokens_seen",
        why="the book counts tokens, not examples: tokens_seen += input_batch.numel() after "
        "every step, recorded at each evaluation (§5.2)",
    )


@pytest.mark.exercise("train_model_simple")
def test_each_step_is_the_books_step(impl, ref, datasets, tokenizer, capsys):
    train_losses, val_losses, _ = book_run(impl.train_model_simple, ref, datasets, tokenizer)
    want_train, want_val, _ = book_run(ref.train_model_simple, ref, datasets, tokenizer)
    capsys.readouterr()
    for step, (got, want) in enumerate(zip(train_losses, want_train)):
        assert math.isclose(got, want, rel_tol=1e-6, abs_tol=0.0), (
            f"train loss after step {step}: expected {want:.5f}, got {got:.5f} — each step of "
            "the book's loop is optimizer.zero_grad() (gradients must not add up across steps), "
            "calc_loss_batch, loss.backward(), optimizer.step() (§5.2)"
        )
    assert_equal(len(val_losses), len(want_val), name="number of evaluations")


@pytest.mark.exercise("train_model_simple")
def test_a_model_handed_over_in_eval_mode_is_trained_in_training_mode(
    impl, ref, datasets, tokenizer, capsys
):
    model = tiny_model(ref, drop_rate=0.5).eval()  # e.g. just evaluated by the learner
    modes: list[bool] = []  # model.training at each forward pass that builds a graph
    model.register_forward_pre_hook(
        lambda module, args: modes.append(module.training) if torch.is_grad_enabled() else None
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4, weight_decay=0.1)
    torch.manual_seed(123)
    train, val = loader(ref, datasets[0], shuffle=True, n=8), loader(ref, datasets[1])
    impl.train_model_simple(model, train, val, optimizer, "cpu", 1, 100, 1, START, tokenizer)
    capsys.readouterr()
    assert modes and all(modes), (
        f"{modes.count(False)} of {len(modes)} training steps ran in eval mode (dropout off) "
        "when the model arrived in eval mode: train_model_simple must call model.train() at "
        "the start of each epoch, so dropout is on while training (§5.2)"
    )


@pytest.mark.exercise("evaluate_model")
def test_evaluate_model_scores_each_loader(impl, ref, datasets):
    model = tiny_model(ref, drop_rate=0.0)
    train, val = loader(ref, datasets[0]), loader(ref, datasets[1])
    got = impl.evaluate_model(model, train, val, "cpu", eval_iter=2)
    want = (
        ref.calc_loss_loader(train, model, "cpu", num_batches=2),
        ref.calc_loss_loader(val, model, "cpu", num_batches=2),
    )
    for i, label in enumerate(("train", "val")):
        assert math.isclose(got[i], want[i], rel_tol=1e-6), (
            f"evaluate_model's {label} loss: expected {want[i]:.5f}, got {got[i]:.5f} — it returns "
            "(calc_loss_loader(train_loader, ...), calc_loss_loader(val_loader, ...)) over "
            "eval_iter batches each (§5.2)"
        )


@pytest.mark.exercise("generate_and_print_sample")
def test_sample_with_a_newline_in_the_context_is_one_line(impl, ref, tokenizer, capsys):
    impl.generate_and_print_sample(
        tiny_model(ref), tokenizer=tokenizer, device="cpu", start_context="Every effort\nmoves you"
    )
    printed = capsys.readouterr().out
    assert printed.count("\n") == 1, (
        "the book prints decoded_text.replace('\\n', ' '): the sample is one line, newlines "
        f"of the context and the continuation become spaces (§5.2); got {printed[:80]!r}"
    )
