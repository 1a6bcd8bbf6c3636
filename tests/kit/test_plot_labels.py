"""A legend's or axis title's typography is the learner's: the book's plot tests compare what is
plotted, against what, and which curve is which (issue 19: 'training loss' failed the test)."""

from __future__ import annotations

import importlib
import inspect
from types import SimpleNamespace

from ftkit.asserts import plot_text, plotted_curves
from reference import training


def test_plot_text_ignores_case_and_spacing():
    assert plot_text("Training  loss") == plot_text(" training loss\n") == "training loss"
    assert plot_text("Tokens seen") != plot_text("Examples seen")


def test_plotted_curves_are_keyed_by_their_plain_label():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1], [2.0, 1.0], label="TRAINING loss")
    ax.plot([0, 1], [3.0, 2.5], label="Validation  Loss")
    assert plotted_curves(ax) == {"training loss": [2.0, 1.0], "validation loss": [3.0, 2.5]}
    plt.close(fig)


def lowercase_plot_losses():
    """The reference's `plot_losses` with its legend and axis titles in lower case."""
    source = inspect.getsource(training.plot_losses)
    for word in ("Training loss", "Validation loss", "Epochs", "Loss", "Tokens seen"):
        source = source.replace(f'"{word}"', f'"{word.lower()}"')
    assert '"training loss"' in source and '"tokens seen"' in source, source
    scope = dict(vars(training))
    exec(compile(source, "learner.py", "exec"), scope)  # noqa: S102 - a learner's variant
    return scope["plot_losses"]


def test_the_book_test_passes_a_lowercase_legend(drawn_figure):
    book = importlib.import_module("tests.book.test_training")
    learner = SimpleNamespace(plot_losses=lowercase_plot_losses())
    book.test_plot_losses_draws_both_curves_against_epochs_and_tokens(learner, drawn_figure)
