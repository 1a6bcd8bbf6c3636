"""Classification fine-tuning (book ch. 6, §6.5-6.8, exercises 6.1-6.3): head, loss, accuracy, trainer, use.

Weight-free tests use the random-init "tiny" GPT or hand-built models whose logits the
test controls; the book's printed numbers for GPT-2 124M run under the `weights` marker.
"""

from __future__ import annotations

import copy
import math
import re

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ftkit.asserts import (
    assert_close,
    assert_equal,
    assert_tensor_equal,
    plot_text,
    plotted_curves,
)
from ftkit.check.logs import lines_carrying, style_note
from ftkit.io.tokenizer import get_tokenizer  # tooling, not an exercise
from ftkit.presets import get_config

pytestmark = [pytest.mark.stage("classification"), pytest.mark.usefixtures("one_thread")]

SPAM = [
    "WINNER!! You have won a 1000 cash prize. Call now to claim",
    "Free entry in a weekly competition, text WIN to 80086 now",
    "URGENT! Your mobile number has been awarded a 2000 bonus",
]
HAM = [
    "Are we still meeting for lunch tomorrow?",
    "Ok, I will call you when I get home",
]


def tiny_gpt(ref, seed: int = 123, **overrides) -> nn.Module:
    """The random-init "tiny" GPT with a 32-token context (the texts here are shorter): fast on CPU."""
    torch.manual_seed(seed)
    return ref.GPTModel(get_config("tiny", **{"context_length": 32, **overrides}))


def block_params(cfg: dict) -> int:
    """Parameters of one transformer block, counted from the config (book §4.5 layout)."""
    d = cfg["emb_dim"]
    qkv = 3 * (d * d + (d if cfg["qkv_bias"] else 0))
    out_proj = d * d + d
    ff = (d * 4 * d + 4 * d) + (4 * d * d + d)
    norms = 2 * (2 * d)
    return qkv + out_proj + ff + norms


def count(params) -> int:
    return sum(p.numel() for p in params)


def trainable(module: nn.Module) -> int:
    return count(p for p in module.parameters() if p.requires_grad)


LOG_LINE = re.compile(r"Ep 1 \(Step 000000\): Train loss \d+\.\d{3}, Val loss \d+\.\d{3}")
ACCURACY_LINE = re.compile(r"Training accuracy: \d+\.\d{2}% \| Validation accuracy: \d+\.\d{2}%")


class TokenVotes(nn.Module):
    """A fake classifier whose logits the test controls: every token votes for class `id % 2`.
    `modes` records, per forward pass, whether the model was in training mode."""

    def __init__(self):
        super().__init__()
        self.modes: list[bool] = []

    def forward(self, input_batch: torch.Tensor) -> torch.Tensor:
        self.modes.append(self.training)
        return 5.0 * nn.functional.one_hot(input_batch % 2, 2).float()


def vote_loader() -> DataLoader:
    """Three batches of 4, all labelled spam (1); the last token's id parity is the prediction.

    Last tokens predict 1 in 2/4, 3/4 and 0/4 rows; first tokens always predict 1.
    """
    last = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 0], [0, 0, 0, 0]]).flatten()
    inputs = torch.stack([torch.ones_like(last), torch.full_like(last, 2), last], dim=1)
    return DataLoader(TensorDataset(inputs, torch.ones(12, dtype=torch.long)), batch_size=4)


def spam_loader(tokenizer, max_length: int | None = None, batch_size: int = 5) -> DataLoader:
    texts = SPAM + HAM
    ids = [tokenizer.encode(t) for t in texts]
    length = max_length or max(len(x) for x in ids)
    rows = [x[:length] + [50256] * (length - len(x[:length])) for x in ids]
    labels = [1] * len(SPAM) + [0] * len(HAM)
    dataset = TensorDataset(torch.tensor(rows), torch.tensor(labels))
    return DataLoader(dataset, batch_size=batch_size, shuffle=False)


# --------------------------------------------------------------------------------------------
# §6.5: the head
# --------------------------------------------------------------------------------------------


@pytest.mark.exercise("add_classification_head")
def test_head_gives_two_logits_per_token_for_do_you_have_time(impl, ref, golden):
    model = impl.add_classification_head(tiny_gpt(ref))
    inputs = torch.tensor([get_tokenizer().encode("Do you have time")])
    assert_tensor_equal(
        inputs,
        golden("classifier")["inputs_do_you_have_time"],
        name="inputs",
        why="the book's example text has 4 GPT-2 tokens (§6.5)",
    )
    with torch.no_grad():
        outputs = model(inputs)
    assert_equal(
        list(outputs.shape),
        golden("classifier")["head_output_shape"],
        name="outputs.shape",
        why="the new head maps every token's embedding to num_classes=2 logits instead of 50,257 (§6.5)",
    )


@pytest.mark.exercise("add_classification_head")
def test_head_is_created_right_after_seed_123(impl, ref):
    model = tiny_gpt(ref, seed=7)
    torch.manual_seed(999)  # whatever the caller's RNG state, the head is the book's
    impl.add_classification_head(model)
    torch.manual_seed(123)
    expected = nn.Linear(model.cfg["emb_dim"], 2)
    assert_tensor_equal(
        model.out_head.weight.detach(),
        expected.weight.detach(),
        name="out_head.weight",
        why="the book calls torch.manual_seed(123) just before creating the head (§6.5)",
    )
    assert_tensor_equal(model.out_head.bias.detach(), expected.bias.detach(), name="out_head.bias")


@pytest.mark.exercise("add_classification_head")
@pytest.mark.book_exercise("6.2")
@pytest.mark.parametrize("preset", ["tiny", "gpt2-small (124M)"])
@pytest.mark.parametrize("mode", ["last_block", "all", "head"])
def test_trainable_parameters_per_group(impl, ref, preset, mode):
    cfg = get_config(preset)
    # Shapes only: on the meta device a 124M model costs no memory and no time.
    with torch.device("meta" if preset != "tiny" else "cpu"):
        model = ref.GPTModel(cfg)
    impl.add_classification_head(model, num_classes=2, trainable=mode)
    d, block = cfg["emb_dim"], block_params(cfg)
    head = d * 2 + 2
    embeddings = (cfg["vocab_size"] + cfg["context_length"]) * d
    expected = {
        "last_block": {"head": head, "final_norm": 2 * d, "last block": block, "other": 0},
        "all": {
            "head": head,
            "final_norm": 2 * d,
            "last block": block,
            "other": embeddings + (cfg["n_layers"] - 1) * block,
        },
        "head": {"head": head, "final_norm": 0, "last block": 0, "other": 0},
    }[mode]
    last = model.trf_blocks[-1]
    grouped = {"head": model.out_head, "final_norm": model.final_norm, "last block": last}
    actual = {name: trainable(module) for name, module in grouped.items()}
    seen = {id(p) for module in grouped.values() for p in module.parameters()}
    actual["other"] = count(p for p in model.parameters() if p.requires_grad and id(p) not in seen)
    why = {
        "last_block": "the book trains the last transformer block, final_norm and the new head (§6.5)",
        "all": "exercise 6.2 fine-tunes every parameter",
        "head": "only the new output layer is trained",
    }[mode]
    wrong = [f"{k} {actual[k]} (expected {v})" for k, v in expected.items() if actual[k] != v]
    if wrong:
        raise AssertionError(
            f"trainable parameters ({preset}, {mode}) differ in: {'; '.join(wrong)} — {why}"
        )


@pytest.mark.exercise("add_classification_head")
def test_unknown_trainable_choice_is_a_clear_error(impl, ref):
    with pytest.raises(ValueError, match="trainable"):
        impl.add_classification_head(tiny_gpt(ref), trainable="everything")


# --------------------------------------------------------------------------------------------
# §6.6: accuracy and loss on one token
# --------------------------------------------------------------------------------------------


@pytest.mark.exercise("calc_accuracy_loader")
def test_accuracy_counts_argmax_of_the_last_token(impl):
    loader = vote_loader()
    assert_close(
        impl.calc_accuracy_loader(loader, model=TokenVotes(), device="cpu"),
        5 / 12,
        name="accuracy (all batches)",
        atol=1e-12,
        why="the prediction is the argmax of the last token's logits (§6.6)",
    )
    assert_close(
        impl.calc_accuracy_loader(loader, model=TokenVotes(), device="cpu", num_batches=2),
        5 / 8,
        name="accuracy (num_batches=2)",
        atol=1e-12,
        why="num_batches limits scoring to the first batches (§6.6)",
    )
    assert_close(
        impl.calc_accuracy_loader(loader, model=TokenVotes(), device="cpu", num_batches=99),
        5 / 12,
        name="accuracy (num_batches > len(loader))",
        atol=1e-12,
    )


@pytest.mark.exercise("calc_accuracy_loader")
def test_accuracy_counts_examples_when_the_last_batch_is_smaller(impl):
    # Batches of 4, 4 and 2 (the book's validation and test loaders end with a smaller batch):
    # last tokens predict 1 in 2/4, 3/4 and 2/2 rows.
    last = torch.tensor([1, 1, 0, 0, 1, 1, 1, 0, 1, 1])
    inputs = torch.stack([torch.ones_like(last), last], dim=1)
    loader = DataLoader(TensorDataset(inputs, torch.ones(10, dtype=torch.long)), batch_size=4)
    accuracy = impl.calc_accuracy_loader(loader, model=TokenVotes(), device="cpu")
    if math.isclose(float(accuracy), (2 / 4 + 3 / 4 + 2 / 2) / 3, abs_tol=1e-9):
        raise AssertionError(
            f"accuracy {float(accuracy):.4f} is the mean of the per-batch accuracies: the book "
            "counts correct_predictions / num_examples over all batches, so a smaller last "
            "batch counts for fewer examples (§6.6); expected 7/10"
        )
    assert_close(accuracy, 7 / 10, name="accuracy (batches of 4, 4, 2)", atol=1e-12)


@pytest.mark.exercise("calc_accuracy_loader")
@pytest.mark.beyond_book
@pytest.mark.book_exercise("6.3")
def test_first_token_option_reads_the_first_logits_exercise_6_3(impl):
    accuracy = impl.calc_accuracy_loader(
        vote_loader(), model=TokenVotes(), device="cpu", token_position="first"
    )
    assert_close(
        accuracy,
        1.0,
        name="accuracy (first token)",
        atol=1e-12,
        why="exercise 6.3 classifies with the first output token instead of the last",
    )


@pytest.mark.exercise("calc_accuracy_loader")
def test_accuracy_puts_the_model_in_eval_mode(impl):
    model = TokenVotes().train()
    impl.calc_accuracy_loader(vote_loader(), model=model, device="cpu")
    # Judged on the forward passes: a version that restores training mode afterwards is fine.
    assert model.modes and not any(model.modes), (
        "calc_accuracy_loader must run the model in eval mode: call model.eval() (dropout off) "
        f"before its forward passes (§6.6); training mode per pass: {model.modes}"
    )


@pytest.mark.exercise("classifier.calc_loss_batch")
@pytest.mark.beyond_book
@pytest.mark.book_exercise("6.3")
def test_loss_batch_is_cross_entropy_of_the_chosen_token(impl):
    inputs, targets = next(iter(vote_loader()))  # last tokens 1,1,0,0; all targets 1
    right, wrong = math.log(1 + math.exp(-5)), math.log(1 + math.exp(5))
    loss = impl.of("classifier").calc_loss_batch(
        inputs, target_batch=targets, model=TokenVotes(), device="cpu"
    )
    assert_close(
        loss.item(),
        (2 * right + 2 * wrong) / 4,
        name="loss",
        atol=1e-5,
        why="cross-entropy of the last token's 2 logits against the class index, averaged (§6.6)",
    )
    first = impl.of("classifier").calc_loss_batch(
        inputs, target_batch=targets, model=TokenVotes(), device="cpu", token_position="first"
    )
    assert_close(first.item(), right, name="loss (first token, exercise 6.3)", atol=1e-5)


@pytest.mark.exercise("classifier.calc_loss_loader")
def test_loss_loader_averages_batches_and_is_nan_when_empty(impl):
    right, wrong = math.log(1 + math.exp(-5)), math.log(1 + math.exp(5))
    batch_losses = [(2 * right + 2 * wrong) / 4, (3 * right + wrong) / 4, wrong]
    loader = vote_loader()
    assert_close(
        impl.of("classifier").calc_loss_loader(loader, model=TokenVotes(), device="cpu"),
        sum(batch_losses) / 3,
        name="loss over all batches",
        atol=1e-5,
        why="the loader loss is the mean of the batch losses (§6.6)",
    )
    assert_close(
        impl.of("classifier").calc_loss_loader(
            loader, model=TokenVotes(), device="cpu", num_batches=2
        ),
        sum(batch_losses[:2]) / 2,
        name="loss over 2 batches",
        atol=1e-5,
        why="the mean of the first num_batches batch losses: total / num_batches (§6.6)",
    )
    empty = DataLoader(TensorDataset(torch.zeros(0, 3, dtype=torch.long), torch.zeros(0)))
    assert math.isnan(
        impl.of("classifier").calc_loss_loader(empty, model=TokenVotes(), device="cpu")
    ), "an empty loader gives NaN, as the book's calc_loss_loader (§6.6)"


def test_loss_rejects_labels_outside_the_classes(ref):
    inputs = torch.ones(2, 3, dtype=torch.long)
    with pytest.raises(ValueError, match="class labels"):
        ref.of("classifier").calc_loss_batch(inputs, torch.tensor([0, 2]), TokenVotes(), "cpu")


@pytest.mark.exercise("classifier.evaluate_model")
def test_evaluate_model_returns_both_losses_and_restores_train_mode(impl):
    model = TokenVotes().train()
    train_loss, val_loss = impl.of("classifier").evaluate_model(
        model, train_loader=vote_loader(), val_loader=vote_loader(), device="cpu", eval_iter=1
    )
    right, wrong = math.log(1 + math.exp(-5)), math.log(1 + math.exp(5))
    assert_close(
        train_loss, (2 * right + 2 * wrong) / 4, name="train loss (eval_iter=1)", atol=1e-5
    )
    assert_close(val_loss, (2 * right + 2 * wrong) / 4, name="val loss (eval_iter=1)", atol=1e-5)
    assert model.training, "evaluate_model switches back to train mode afterwards (§6.7)"


# --------------------------------------------------------------------------------------------
# §6.7: training
# --------------------------------------------------------------------------------------------


@pytest.mark.exercise("train_classifier_simple")
def test_training_on_five_spam_texts_lowers_the_loss_and_logs_like_the_book(
    impl, ref, capsys, record_property
):
    tokenizer = get_tokenizer()
    loader = spam_loader(tokenizer)
    model = ref.add_classification_head(tiny_gpt(ref))
    before = ref.of("classifier").calc_loss_loader(loader, model, "cpu")
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
    torch.manual_seed(123)
    result = impl.train_classifier_simple(
        model,
        train_loader=loader,
        val_loader=loader,
        optimizer=optimizer,
        device="cpu",
        num_epochs=6,
        eval_freq=2,
        eval_iter=1,
    )
    train_losses, val_losses, train_accs, val_accs, examples_seen = result
    after = ref.of("classifier").calc_loss_loader(loader, model, "cpu")
    assert after < before * 0.8, (
        f"loss {before:.3f} -> {after:.3f}: training did not learn — each step of the book's "
        "loop is optimizer.zero_grad(), calc_loss_batch, loss.backward(), optimizer.step() (§6.7)"
    )
    assert_equal(examples_seen, 6 * 5, name="examples_seen", why="5 texts per epoch, 6 epochs")
    assert_equal(
        len(train_losses), 3, name="len(train_losses)", why="one entry per eval_freq=2 steps"
    )
    assert_equal(len(val_losses), 3, name="len(val_losses)")
    assert_equal(len(train_accs), 6, name="len(train_accs)", why="one accuracy per epoch (§6.7)")
    assert_equal(len(val_accs), 6, name="len(val_accs)")
    lines = capsys.readouterr().out.splitlines()
    # Judged on the numbers each line prints; other wording is a style note, not a failure.
    first = lines_carrying(lines, [(1, 0, train_losses[0], val_losses[0])])[0]
    assert first is not None, (
        f"no printed line carries the first log line's numbers: epoch 1, step 000000, train loss "
        f"{train_losses[0]:.3f}, val loss {val_losses[0]:.3f}; the book prints "
        f"'Ep 1 (Step 000000): Train loss 2.153, Val loss 2.392' (§6.7); printed {lines[:3]}"
    )
    rows = [(a * 100, b * 100) for a, b in zip(train_accs, val_accs, strict=True)]
    accuracy_lines = lines_carrying(lines, rows, tolerance=5.01e-3)
    assert None not in accuracy_lines, (
        "each epoch prints its training and validation accuracy in percent with 2 decimals, "
        f"e.g. 'Training accuracy: 70.00% | Validation accuracy: 72.50%' (§6.7); expected "
        f"{rows[accuracy_lines.index(None)]} on a line; printed {lines[:8]}"
    )
    notes = [
        style_note([first], LOG_LINE, "Ep 1 (Step 000000): Train loss 2.153, Val loss 2.392"),
        style_note(
            accuracy_lines, ACCURACY_LINE, "Training accuracy: 70.00% | Validation accuracy: 72.50%"
        ),
    ]
    if any(notes):
        record_property("ftkit_style", next(n for n in notes if n))


# --------------------------------------------------------------------------------------------
# §6.8: using the classifier; exercise 6.1
# --------------------------------------------------------------------------------------------


def biased_classifier(ref, prefer: int, **overrides) -> nn.Module:
    """A tiny GPT whose head ignores the text and always prefers class `prefer`."""
    model = ref.add_classification_head(tiny_gpt(ref, **overrides))
    with torch.no_grad():
        model.out_head.weight.zero_()
        model.out_head.bias.copy_(torch.tensor([1.0, 0.0] if prefer == 0 else [0.0, 1.0]))
    return model


@pytest.mark.exercise("classify_review")
@pytest.mark.parametrize(("prefer", "label"), [(1, "spam"), (0, "not spam")])
def test_classify_review_maps_class_1_to_spam(impl, ref, prefer, label):
    model = biased_classifier(ref, prefer)
    got = impl.classify_review(
        "You won a prize!", model=model, tokenizer=get_tokenizer(), device="cpu", max_length=12
    )
    assert_equal(got, label, name="classify_review", why="label 1 is spam, 0 is not spam (§6.8)")


@pytest.mark.exercise("classify_review")
@pytest.mark.beyond_book
def test_classify_review_pads_and_truncates_to_max_length(impl, ref):
    model = biased_classifier(ref, 1, context_length=16)
    seen = []
    model.register_forward_pre_hook(lambda _module, args: seen.append(args[0].clone()))
    tokenizer = get_tokenizer()
    impl.classify_review("Hi there", model=model, tokenizer=tokenizer, device="cpu", max_length=10)
    expected = tokenizer.encode("Hi there") + [50256] * 8
    assert_tensor_equal(
        seen[-1],
        [expected],
        name="model input",
        why="the text is padded with <|endoftext|> to the training length (§6.8)",
    )
    long_text = "spam " * 100
    impl.classify_review(long_text, model=model, tokenizer=tokenizer, device="cpu", max_length=10)
    assert_tensor_equal(
        seen[-1], [tokenizer.encode(long_text)[:10]], name="model input (long text)"
    )
    impl.classify_review(long_text, model=model, tokenizer=tokenizer, device="cpu")
    assert_equal(
        list(seen[-1].shape),
        [1, 16],
        name="input shape without max_length",
        why="a text longer than the context is cut to the model's context length",
    )


@pytest.mark.exercise("classify_review")
@pytest.mark.beyond_book
def test_classify_review_rejects_empty_text(impl, ref):
    with pytest.raises(ValueError, match="empty"):
        impl.classify_review(
            "  ",
            model=biased_classifier(ref, 1),
            tokenizer=get_tokenizer(),
            device="cpu",
            max_length=8,
        )


@pytest.mark.exercise("classifier.calc_loss_batch")
@pytest.mark.book_exercise("6.1")
def test_padding_to_the_full_context_exercise_6_1(impl, ref, golden, tmp_path):
    csv = tmp_path / "train.csv"
    rows = [(1, text) for text in SPAM] + [(0, text) for text in HAM] * 3  # 9 texts
    csv.write_text("Label,Text\n" + "".join(f'{label},"{text}"\n' for label, text in rows))
    dataset = ref.SpamDataset(csv, get_tokenizer(), max_length=1024)
    inputs, targets = next(iter(DataLoader(dataset, batch_size=8)))
    assert_equal(
        list(inputs.shape),
        golden("classifier")["exercise_6_1_padded_batch_shape"],
        name="padded batch shape",
        why="exercise 6.1 pads every text to the model's 1024-token context",
    )
    model = ref.add_classification_head(tiny_gpt(ref, context_length=1024))
    loss = impl.of("classifier").calc_loss_batch(
        inputs, target_batch=targets, model=model, device="cpu"
    )
    assert torch.isfinite(loss), "the classifier must handle texts padded to the full context"


# --------------------------------------------------------------------------------------------
# With OpenAI's GPT-2 124M weights (book values)
# --------------------------------------------------------------------------------------------


@pytest.mark.exercise("add_classification_head")
@pytest.mark.weights
def test_head_outputs_for_do_you_have_time_match_the_book(impl, golden, pretrained_gpt2):
    model = impl.add_classification_head(copy.deepcopy(pretrained_gpt2("124M")))
    inputs = torch.tensor([get_tokenizer().encode("Do you have time")])
    with torch.no_grad():
        outputs = model(inputs)
    assert_tensor_equal(
        outputs[0],
        golden("classifier")["head_outputs_124m"],
        name="outputs[0]",
        atol=1e-3,
        why="GPT-2 124M with the seed-123 head prints these logits (§6.5)",
    )


@pytest.mark.exercise("train_classifier_simple")
@pytest.mark.weights
@pytest.mark.slow
def test_five_epoch_run_reaches_the_book_accuracies(impl, ref, golden, pretrained_gpt2, tmp_path):
    hp = golden("classifier")["hyperparameters"]
    from ftkit.data.spam import create_spam_loaders, prepare_spam_splits

    paths = prepare_spam_splits(tmp_path)
    train_loader, val_loader, test_loader = create_spam_loaders(
        paths["train"], paths["validation"], paths["test"], get_tokenizer(), batch_size=8
    )
    model = ref.add_classification_head(copy.deepcopy(pretrained_gpt2("124M")))
    torch.manual_seed(hp["seed"])
    optimizer = torch.optim.AdamW(model.parameters(), lr=hp["lr"], weight_decay=hp["weight_decay"])
    impl.train_classifier_simple(
        model,
        train_loader=train_loader,
        val_loader=val_loader,
        optimizer=optimizer,
        device="cpu",
        num_epochs=hp["num_epochs"],
        eval_freq=hp["eval_freq"],
        eval_iter=hp["eval_iter"],
    )
    book = golden("classifier")["final_accuracy_percent"]
    for name, loader in (("train", train_loader), ("val", val_loader), ("test", test_loader)):
        assert_close(
            100 * ref.calc_accuracy_loader(loader, model, "cpu"),
            book[name],
            name=f"{name} accuracy (%)",
            atol=2.0,
            why="the book's 5-epoch fine-tuning of GPT-2 124M (§6.7)",
        )


@pytest.mark.exercise("plot_values")
@pytest.mark.parametrize("label", ["loss", "accuracy"])
def test_plot_values_draws_both_curves_against_epochs_and_examples(impl, drawn_figure, label):
    epochs, examples = [0.0, 1.0, 2.0], [0, 1040, 2080]
    train, val = [0.70, 0.85, 0.95], [0.72, 0.83, 0.93]
    fig = drawn_figure(impl.plot_values, epochs, examples, train, val, label)
    ax1 = fig.axes[0]
    curves = plotted_curves(ax1)
    assert_equal(
        curves,
        {f"training {label}": train, f"validation {label}": val},
        name="curves on the epochs axis",
        why="the book plots the training and validation values against epochs (§6.7)",
    )
    assert_equal(
        (plot_text(ax1.get_xlabel()), plot_text(ax1.get_ylabel())),
        ("epochs", label),
        name="axis labels",
    )
    tops = [ax for ax in fig.axes[1:] if ax.get_xlabel()]
    assert_equal(
        [plot_text(ax.get_xlabel()) for ax in tops], ["examples seen"], name="second x-axis"
    )


@pytest.mark.exercise("add_classification_head")
def test_head_size_comes_from_num_classes(impl, ref):
    model = impl.add_classification_head(tiny_gpt(ref), num_classes=3)
    out = model.out_head
    assert isinstance(out, nn.Linear) and out.out_features == 3, (
        f"add_classification_head(model, num_classes=3) gave out_head {out}: the book's head is "
        "nn.Linear(in_features=emb_dim, out_features=num_classes) — use num_classes, not 2 (§6.5)"
    )
    with torch.no_grad():
        logits = model(torch.tensor([[1, 2, 3]]))
    assert_equal(list(logits.shape), [1, 3, 3], name="logits shape with num_classes=3")
