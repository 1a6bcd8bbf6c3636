"""`ftkit bench`: run the benchmarks (book path vs fast paths) and compare saved results.

`ftkit bench [--device cpu] [--size gpt2-small ...] [--quick] [--save NAME]` spawns pytest
on `tests/kit/benchmarks` with pytest-benchmark enabled, saves the JSON under
`benchmarks/results/`, then prints the fast/book ratios and loss checks of that run.
`ftkit bench compare [--plot PATH]` prints the book-format table (book §7.6) over every
saved result with the book's own rows, the ratios and loss checks; `ftkit bench ratios`
prints only the ratios and loss checks.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from ftkit.layout import BENCHMARKS as BENCH_DIR
from ftkit.layout import INSTALLED, ROOT, bench_results_dir

DEVICES = ("cpu", "cuda", "mps")
SIZES = ("tiny", "gpt2-small", "gpt2-medium")
QUICK_ENV = {
    "FTKIT_BENCH_REPEATS": "1",
    "FTKIT_BENCH_GEN_REPEATS": "1",
    "FTKIT_BENCH_RESPOND_TOKENS": "32",
    "FTKIT_BENCH_E2E_LIMIT": "40",
}
QUICK_NEW_TOKENS = "32"


def register(subparsers: argparse._SubParsersAction) -> None:
    results_dir = bench_results_dir()
    parser = subparsers.add_parser(
        "bench",
        help="benchmark the book's path vs the fast path; compare saved results",
        description="Training-step and generation benchmarks (pytest-benchmark), book vs fast "
        "paths side by side; `compare` tabulates saved results in the book's §7.6 format.",
    )
    parser.add_argument("--device", choices=DEVICES, default="cpu", help="default: cpu")
    parser.add_argument(
        "--size",
        choices=SIZES,
        nargs="+",
        default=["gpt2-small"],
        help="model sizes (random init) to benchmark; default: gpt2-small",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"one repeat, {QUICK_NEW_TOKENS} generated tokens, no 20-step bf16 loss check",
    )
    parser.add_argument(
        "--save", default=None, help="name for the saved results (default: the device)"
    )
    parser.add_argument(
        "--results", type=Path, default=None, help=f"storage folder (default {results_dir})"
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="print the pytest command instead of running it"
    )
    parser.set_defaults(func=run_bench)
    actions = parser.add_subparsers(dest="bench_action", metavar="ACTION")

    compare = actions.add_parser(
        "compare", help="table of every saved result beside the book's §7.6 rows, with ratios"
    )
    compare.add_argument(
        "--results", type=Path, default=None, help=f"storage folder (default {results_dir})"
    )
    compare.add_argument("--plot", type=Path, default=None, help="also write a PNG plot here")
    compare.set_defaults(func=run_compare)

    ratios = actions.add_parser("ratios", help="only the three fast/book ratios and loss checks")
    ratios.add_argument(
        "--results", type=Path, default=None, help=f"storage folder (default {results_dir})"
    )
    ratios.set_defaults(func=run_ratios)


def results_folder(given: Path | None, *, reading: bool = False) -> Path:
    """`--results` as an absolute path (relative to where ftkit was run), else the default.

    Reading with no `--results` in an installed kit whose own folder holds no results yet:
    the kit's measured runs that ship with it (said on stderr).
    """
    if given is not None:
        return given.expanduser().resolve()
    folder = bench_results_dir()
    if reading and INSTALLED and not any(folder.rglob("*.json")):
        from ftkit.bench import RESULTS_DIR

        print(f"(no runs of yours in {folder} yet: showing the kit's own results)", file=sys.stderr)
        return RESULTS_DIR
    return folder


def selection(device: str, sizes: list[str], quick: bool) -> str:
    """The `-k` expression for the chosen device and sizes (test ids are device-size-rN-path)."""
    picks = [f"{device}-{size}-" for size in sizes]
    if not quick and device == "cpu" and "gpt2-small" in sizes:
        picks.append("test_bf16_loss_after_20_steps")
    picks += ["test_collate", "test_prepare_training_set"]
    return " or ".join(picks)


def pytest_command(args: argparse.Namespace, name: str) -> list[str]:
    """The pytest invocation: timing on, saved to the storage folder under `name`."""
    return [
        sys.executable,
        "-m",
        "pytest",
        str(BENCH_DIR),
        "-q",
        "-p",
        "no:cacheprovider",
        # The default addopts deselect benchmarks; this -m comes later and wins.
        "-m",
        "not slow",
        "-k",
        selection(args.device, args.size, args.quick),
        "--benchmark-enable",
        f"--benchmark-storage={args.results}",
        f"--benchmark-save={name}",
        "--benchmark-columns=median,rounds",
    ]


def run_bench(args: argparse.Namespace) -> int:
    args.results = results_folder(args.results)  # the child runs in the kit's folder
    name = args.save or args.device
    if not name.replace("-", "").replace("_", "").isalnum():
        print(f"ftkit bench: --save {name!r}: use letters, digits, '-' and '_'", file=sys.stderr)
        return 2
    command = pytest_command(args, name)
    env = dict(os.environ)
    if args.quick:
        env.update(QUICK_ENV)
        env.setdefault("FTKIT_BENCH_NEW_TOKENS", QUICK_NEW_TOKENS)
    if args.dry_run:
        print(" ".join(command))
        return 0
    before = set(Path(args.results).rglob(f"*_{name}.json"))
    code = subprocess.call(command, cwd=ROOT, env=env)
    saved = sorted(set(Path(args.results).rglob(f"*_{name}.json")) - before)
    if not saved:
        print(f"ftkit bench: pytest exited {code} and saved no results", file=sys.stderr)
        return code or 1
    print(f"\nsaved {saved[-1]}")
    show_ratios(saved[-1])
    return code


def show_ratios(results: Path) -> int:
    from ftkit.bench import load_results, loss_checks, ratio_lines

    loaded = load_results(results)
    lines = ratio_lines(loaded) + loss_checks(loaded)
    if not lines:
        print(
            f"no book/fast pairs in {results}: run `ftkit bench --size gpt2-small` first",
            file=sys.stderr,
        )
        return 1
    print("\n".join(lines))
    return 0


def run_ratios(args: argparse.Namespace) -> int:
    args.results = results_folder(args.results, reading=True)
    if not Path(args.results).exists():
        print(f"ftkit bench ratios: no results folder {args.results}", file=sys.stderr)
        return 1
    try:
        return show_ratios(args.results)
    except ValueError as err:
        print(f"ftkit bench ratios: {err}", file=sys.stderr)
        return 1


def run_compare(args: argparse.Namespace) -> int:
    from ftkit.bench import compare_table, load_results, loss_checks, plot, ratio_lines

    args.results = results_folder(args.results, reading=True)
    if not Path(args.results).exists():
        print(f"ftkit bench compare: no results folder {args.results}", file=sys.stderr)
        return 1
    try:
        results = load_results(args.results)
    except ValueError as err:
        print(f"ftkit bench compare: {err}", file=sys.stderr)
        return 1
    if not results:
        print(
            f"ftkit bench compare: no kit benchmark results under {args.results}; "
            "run `ftkit bench` first",
            file=sys.stderr,
        )
        return 1
    print(compare_table(results))
    lines = ratio_lines(results) + loss_checks(results)
    if lines:
        print("\nfast/book ratios and loss checks (same run, same machine):")
        print("\n".join(lines))
    if args.plot:
        print(f"\nplot: {plot(results, args.plot)}")
    return 0
