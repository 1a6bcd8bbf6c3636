"""Root pytest configuration: choose the implementation under test, load goldens.

`pytest --impl reference` (default), `--impl exercises`, or `--impl PACKAGE` for
any importable package (or adapter module) with the kit's names. `FTKIT_IMPL`
sets the default. A test asks for `impl` for the function it checks and for
`ref` for everything else, so a learner's unfinished model never fails their
collate tests.
"""

from __future__ import annotations

import json
import os

import pytest

from ftkit.check.impl import Impl
from ftkit.layout import GOLDEN as GOLDEN_DIR  # a checkout's golden/ or the installed copy

pytest_plugins = ["ftkit.check.plugin"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--impl",
        default=os.environ.get("FTKIT_IMPL", "reference"),
        help="implementation under test: reference (default), exercises, or an importable "
        "package/adapter module with the kit's names (env: FTKIT_IMPL)",
    )


@pytest.fixture(scope="session")
def impl_name(request: pytest.FixtureRequest) -> str:
    return request.config.getoption("--impl")


@pytest.fixture
def impl(request: pytest.FixtureRequest, impl_name: str) -> Impl:
    """The implementation under test; names it is asked for are recorded on the test item."""
    chosen = Impl(impl_name)
    request.node.ftkit_impl = chosen
    return chosen


@pytest.fixture(scope="session")
def ref() -> Impl:
    """The reference implementation, for everything a test does not check."""
    return Impl("reference")


def load_golden(name: str) -> dict:
    """Values the book prints, from `golden/<name>.json`, each entry `{"section", "value"}`."""
    path = GOLDEN_DIR / f"{name}.json"
    if not path.exists():
        raise FileNotFoundError(f"no golden file {path}")
    entries = json.loads(path.read_text(encoding="utf-8"))
    return {key: entry["value"] for key, entry in entries.items() if not key.startswith("_")}


@pytest.fixture(scope="session")
def golden():
    """`golden("collate")["targets"]`: the book's printed value (see golden/*.json for sections)."""
    return load_golden
