"""Shared fixtures for tests that need OpenAI's pretrained GPT-2 weights (marker `weights`).

`pretrained_gpt2("124M")` gives the reference GPTModel with OpenAI's weights loaded
(book §5.5), in eval mode, built once per size per session: do not train it in
place (`copy.deepcopy` it first). `gpt2_params("124M")` gives `(settings, params)`
as `ftkit.io.gpt2.download_and_load_gpt2` returns them (from whichever source is
cached: Hugging Face safetensors, OpenAI's checkpoint or the book's .pth), for
tests of a learner's `load_weights_into_gpt`. Where the weights are not cached and cannot be
downloaded (offline, no network, or a run not selecting `-m weights`), both
skip with instructions.
"""

from __future__ import annotations

import os

import pytest
import torch

from ftkit.suite import cpus

APPROX_DOWNLOAD = {"124M": "~500 MB", "355M": "~1.4 GB", "774M": "~3.1 GB", "1558M": "~6.2 GB"}


def _missing_weights_message(size: str, reason: str) -> str:
    from ftkit.io.gpt2 import gpt2_dir
    from ftkit.io.hf_hub import hf_snapshot_dir

    return (
        f"GPT-2 {size} weights not found in {hf_snapshot_dir(size)} (hf) nor {gpt2_dir(size)} "
        "(openai, book); on a machine with internet run "
        f"`ftkit weights fetch {size}` ({APPROX_DOWNLOAD.get(size, 'large')}), then "
        f"`pytest -m weights` ({reason})"
    )


def _load_params(size: str, may_download: bool):
    """`download_and_load_gpt2(size)`, skipping the test when the files cannot be had."""
    from ftkit.io.assets import AssetError
    from ftkit.io.gpt2 import cached_sources, download_and_load_gpt2, pick_source

    source = pick_source(size)  # a cached source (any of hf, openai, book), else hf
    was_cached = source in cached_sources(size)
    if not was_cached and not may_download:
        pytest.skip(_missing_weights_message(size, "a plain `pytest` run never downloads them"))
    try:
        return download_and_load_gpt2(size, source=source)
    except AssetError as err:
        if was_cached:
            raise  # the files are there but fail verification: an error, not a skip
        first_line = str(err).splitlines()[0]
        pytest.skip(_missing_weights_message(size, first_line))
    except ImportError as err:  # a reader's package missing (TensorFlow for openai's files)
        pytest.skip(f"GPT-2 {size} weights cannot be read here: {err}")


@pytest.fixture(scope="session")
def gpt2_params(request: pytest.FixtureRequest):
    """Factory: `gpt2_params("355M") -> (settings, params)`, cached per size for the session.

    Missing files are downloaded only when the run asks for weights tests by marker
    (`pytest -m weights`), so a default run never pulls gigabytes unasked.
    """
    may_download = "weights" in (request.config.getoption("markexpr", "") or "")
    cache: dict[str, tuple] = {}

    def get(size: str = "124M"):
        if size not in cache:
            cache[size] = _load_params(size, may_download)
        return cache[size]

    return get


@pytest.fixture(scope="session")
def pretrained_gpt2(gpt2_params):
    """Factory: `pretrained_gpt2("124M") -> GPTModel` (reference, OpenAI weights, eval), cached per size."""
    from ftkit.presets import get_config
    from reference.model import GPTModel
    from reference.weights import load_weights_into_gpt

    cache: dict = {}

    def get(size: str = "124M"):
        if size not in cache:
            _settings, params = gpt2_params(size)
            model = GPTModel(get_config(size))
            load_weights_into_gpt(model, params)
            cache[size] = model.eval()
        return cache[size]

    return get


@pytest.fixture
def drawn_figure(tmp_path, monkeypatch):
    """Factory: call a plotting function the book's way and return the matplotlib Figure it drew.

    The book's `plot_losses`/`plot_values` draw with pyplot, save a PDF into the working
    folder and call `plt.show()`; the reference returns its Figure instead. Either is
    fine: the call runs in a temporary folder with a non-interactive backend, and the
    Figure is the one returned or else pyplot's current one.
    """
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    monkeypatch.chdir(tmp_path)
    plt.close("all")

    def draw(plot, *args, **kwargs):
        returned = plot(*args, **kwargs)
        fig = returned if hasattr(returned, "axes") else plt.gcf()
        assert fig.axes, f"{getattr(plot, '__name__', plot)} drew no axes"
        return fig

    yield draw
    plt.close("all")


def pytest_configure(config: pytest.Config) -> None:
    """In a worker of a whole-suite run (ftkit/suite.py), torch takes its share of the CPUs."""
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers:
        torch.set_num_threads(max(1, cpus() // int(workers)))


@pytest.fixture
def one_thread():
    """Torch on one thread for the test (`pytest.mark.usefixtures("one_thread")`), then as before.

    Tiny models gain nothing from threads, and on a shared 2-core machine two threads per
    process fight the other test runs (measured: up to 10x slower).
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
