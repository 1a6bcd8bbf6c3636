"""`ftkit bench compare` and its bookkeeping (ftkit/bench.py) on a saved pytest-benchmark file.

The fixture `tests/kit/benchmarks/fixtures/results/.../0001_sample.json` is a real file saved by
`ftkit bench --size tiny --quick` (pytest-benchmark's schema: machine_info, commit_info,
benchmarks[].stats/extra_info, datetime, version), with its medians, losses and
tokens set by hand to round values so every ratio below can be worked out on paper:
train medians book 0.4 s, fast-fp32 0.25 s, fast-bf16 0.2 s; generate book 1.0 s,
kv-cache 0.1 s; losses book [10, 9, 8] vs fast-fp32 [10, 9.00005, 8]; bf16 check 2.0 vs 2.03.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from ftkit import bench
from ftkit.cli import main
from ftkit.presets import get_config

FIXTURE_DIR = Path(__file__).parent / "benchmarks" / "fixtures" / "results"
FIXTURE = next(FIXTURE_DIR.rglob("0001_sample.json"))


@pytest.fixture(scope="module")
def raw() -> dict:
    return json.loads(FIXTURE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def results() -> list[bench.Result]:
    return bench.load_results(FIXTURE_DIR)


def by_path(results, kind, path):
    return next(r for r in results if r.kind == kind and r.path == path)


def test_reads_the_kits_results_and_skips_others(raw, results):
    kit = [b for b in raw["benchmarks"] if "path" in b["extra_info"]]
    assert len(raw["benchmarks"]) > len(kit), "the fixture should hold non-kit benchmarks too"
    assert sorted((r.kind, r.path) for r in results) == sorted(
        (b["extra_info"]["kind"], b["extra_info"]["path"]) for b in kit
    )
    book = by_path(results, "train", "book")
    entry = next(b for b in kit if b["name"] == "test_train_step[cpu-tiny-r0-book]")
    assert book.tokens_per_s == pytest.approx(
        entry["extra_info"]["tokens_per_round"] / entry["stats"]["median"]
    )
    assert book.losses == [10.0, 9.0, 8.0]
    assert book.source == FIXTURE.name


def test_repeats_are_merged_by_median(raw, tmp_path):
    data = json.loads(json.dumps(raw))
    train = [
        b
        for b in data["benchmarks"]
        if b["extra_info"].get("path") == "book" and b["extra_info"]["kind"] == "train"
    ]
    extra = []
    for median in (0.8, 0.2):  # with the fixture's 0.4: median of medians is 0.4
        copy = json.loads(json.dumps(train[0]))
        copy["stats"]["median"] = median
        extra.append(copy)
    data["benchmarks"] += extra
    (tmp_path / "r.json").write_text(json.dumps(data))
    result = by_path(bench.load_results(tmp_path), train[0]["extra_info"]["kind"], "book")
    assert result.repeats == 3
    assert result.tokens_per_s == pytest.approx(train[0]["extra_info"]["tokens_per_round"] / 0.4)


def test_ratios_against_their_targets(results):
    found = {r["what"]: r for r in bench.ratios(results)}
    assert found[bench.RATIOS[0][4]]["ratio"] == pytest.approx(0.4 / 0.25)
    assert found[bench.RATIOS[1][4]]["ratio"] == pytest.approx(0.4 / 0.2)
    assert found[bench.RATIOS[2][4]]["ratio"] == pytest.approx(1.0 / 0.1)
    # The fixture is a tiny run: its ratios are shown, with no verdict (targets are for GPT-2).
    lines = bench.ratio_lines(results)
    assert len(lines) == 3
    assert all("no target for tiny" in line and "PASS" not in line for line in lines), lines
    assert all("MISS" not in line for line in lines), lines
    # The same medians measured on gpt2-small get their verdicts.
    small = [dataclasses.replace(r, size="gpt2-small") for r in results]
    lines = bench.ratio_lines(small)
    assert any("1.600x" in line and "target >= 1.5x, PASS" in line for line in lines)
    assert any("2.000x" in line and "target >= 2.5x, MISS" in line for line in lines)
    assert any("10.000x" in line and "target >= 15.0x, MISS" in line for line in lines)
    assert not any("NOT TRUSTWORTHY" in line for line in lines), "the fixture records no load"


def test_a_pair_measured_on_a_busy_machine_is_flagged(results):
    def with_share(r, share):
        return dataclasses.replace(
            r, size="gpt2-small", extra={**r.extra, "others_cpu_share": share}
        )

    quiet = [with_share(r, 0.05) for r in results]
    assert not any("NOT TRUSTWORTHY" in line for line in bench.ratio_lines(quiet))
    busy = [with_share(r, 0.6 if r.path == "book" else 0.05) for r in results]
    flagged = [line for line in bench.ratio_lines(busy) if "NOT TRUSTWORTHY" in line]
    assert len(flagged) == 3 and all("60% of the CPUs" in line for line in flagged), flagged


def test_other_processes_share_of_the_cpus():
    # 10 s on 2 cores; 12 CPU-seconds used in all, 4 of them by this process: others 8/20.
    assert bench.others_cpu_share((0.0, 100.0, 1.0), (10.0, 112.0, 5.0), cores=2) == 0.4
    assert bench.others_cpu_share((0.0, 100.0, 1.0), (10.0, 104.0, 5.0), cores=2) == 0.0
    assert bench.others_cpu_share(None, (10.0, 104.0, 5.0)) is None
    snapshot = bench.cpu_snapshot()
    assert snapshot is None or len(snapshot) == 3


def test_loss_and_token_checks(results):
    text = "\n".join(bench.loss_checks(results))
    assert f"max relative difference {0.00005 / 9:.2e} (target <= 1e-5, PASS)" in text
    assert "loss fp32 2.0000 vs bf16 2.0300: 1.50% apart (target <= 2%, PASS)" in text
    assert "identical, PASS" in text


def test_compare_table_has_ours_and_the_books_rows(results):
    table = bench.compare_table(results)
    book = by_path(results, "train", "book")
    minutes = 2 * book.epoch_tokens / book.tokens_per_s / 60
    assert f"| tiny | {book.device_name} | book (fp32) | {minutes:.2f} |" in table
    # The book's §7.6 rows, with tokens/s derived from the same epoch size.
    for row in bench.BOOK_ROWS:
        assert f"| {row['size']} | {row['device_name']} | book (§7.6) | {row['minutes']:.2f} |" in (
            table
        )
    m3 = 2 * book.epoch_tokens / (15.78 * 60)
    assert f"{m3:,.0f}" in table
    assert "| tiny | " in table.split("generation path")[1]


def test_matmul_params_match_the_books_count():
    # Book §4.6: 163,009,536 parameters for GPT-2 124M without qkv bias, of which the token
    # (50257 x 768) and position (1024 x 768) embeddings do no matrix multiply.
    cfg = get_config("gpt2-small", qkv_bias=False)
    assert bench.matmul_params(cfg) == 163_009_536 - 50257 * 768 - 1024 * 768


def test_mfu_uses_the_devices_peak():
    assert bench.peak_tflops("NVIDIA H100 PCIe", "bf16") == 756.0
    assert bench.peak_tflops("NVIDIA H100 80GB HBM3", "bf16") == 989.0
    assert bench.peak_tflops("NVIDIA L4", "fp32") == 30.3
    assert bench.peak_tflops("Intel Xeon", "fp32") is None
    flops = bench.train_flops_per_token(get_config("gpt2-small"), 72)
    gpu = bench.Result(
        "train",
        "gpt2-small",
        "cuda",
        "NVIDIA A100-SXM4-40GB",
        "bf16",
        "fast-bf16",
        tokens_per_s=100_000.0,
        source="x",
        flops_per_token=flops,
    )
    assert gpu.mfu == pytest.approx(100_000.0 * flops / 312e12)
    cpu = bench.Result(
        "train", "gpt2-small", "cpu", "Xeon", "fp32", "book", 1.0, "x", flops_per_token=flops
    )
    assert cpu.mfu is None


def test_bad_files_are_named(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match=r"bad\.json: cannot read benchmark JSON"):
        bench.load_results(bad)
    bad.write_text('{"machine_info": {}}')
    with pytest.raises(ValueError, match="not a pytest-benchmark file"):
        bench.load_results(bad)
    data = json.loads(FIXTURE.read_text())
    kit = next(b for b in data["benchmarks"] if "path" in b["extra_info"])
    kit["stats"]["median"] = 0
    bad.write_text(json.dumps(data))
    with pytest.raises(
        ValueError,
        match=rf"bad\.json: benchmark \d+ \({kit['name']}\) has no median".replace(
            "[", r"\["
        ).replace("]", r"\]"),
    ):
        bench.load_results(bad)
    with pytest.raises(ValueError, match="no results to plot"):
        bench.plot([], tmp_path / "x.png")


def test_cli_compare_prints_table_ratios_and_writes_a_png(tmp_path, capsys):
    png = tmp_path / "plots" / "bench.png"
    assert main(["bench", "compare", "--results", str(FIXTURE_DIR), "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert "| model | device | path | 2 epochs (min) | tokens/s | MFU | source |" in out
    assert "15.78" in out and "no target for tiny" in out and "identical, PASS" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_ratios_and_missing_results(tmp_path, capsys):
    assert main(["bench", "ratios", "--results", str(FIXTURE_DIR)]) == 0
    assert capsys.readouterr().out.count("no target for tiny") == 3
    assert main(["bench", "compare", "--results", str(tmp_path / "none")]) == 1
    assert "no results folder" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["bench", "compare", "--results", str(empty)]) == 1
    assert "run `ftkit bench` first" in capsys.readouterr().err
    assert main(["bench", "ratios", "--results", str(empty)]) == 1
    assert "no book/fast pairs" in capsys.readouterr().err


def test_cli_run_builds_the_pytest_command(tmp_path, capsys):
    args = ["bench", "--size", "tiny", "gpt2-small", "--save", "my-box", "--results", str(tmp_path)]
    assert main([*args, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "-k cpu-tiny- or cpu-gpt2-small- or test_bf16_loss_after_20_steps" in out
    assert f"--benchmark-storage={tmp_path}" in out and "--benchmark-save=my-box" in out
    assert "--benchmark-enable" in out and "-m not slow" in out
    assert main(["bench", "--save", "bad name!", "--dry-run"]) == 2


@pytest.mark.slow
def test_cli_quick_tiny_run_saves_and_reports(tmp_path, capsys, monkeypatch):
    """A real run of the tiny CPU benchmarks through the CLI (about 15 s: slow)."""
    monkeypatch.setenv("FTKIT_BENCH_ROUNDS", "2")
    monkeypatch.setenv("FTKIT_BENCH_THREADS", "1")
    assert (
        main(["bench", "--size", "tiny", "--quick", "--save", "t", "--results", str(tmp_path)]) == 0
    )
    saved = list(tmp_path.rglob("*_t.json"))
    assert len(saved) == 1
    out = capsys.readouterr().out
    # every fast/book pair of bench.RATIOS is measured; a tiny run gets no verdict
    assert out.count("no target for tiny") == len(bench.RATIOS), out
    assert "identical, PASS" in out
    shutil.rmtree(tmp_path)


def test_end_to_end_pairs_get_ratio_lines_a_table_and_a_response_check():
    def result(kind, path, per_s, dtype="fp32", **extra):
        return bench.Result(
            kind=kind,
            size="gpt2-small",
            device="cpu",
            device_name="CPU",
            dtype=dtype,
            path=path,
            tokens_per_s=per_s,
            source="s.json",
            extra=extra,
        )

    results = [
        result("e2e-train", "exact", 100.0),
        result("e2e-train", "fast", 250.0, dtype="bf16"),
        result("e2e-respond", "exact", 0.02, responses=["a", "b"]),
        result("e2e-respond", "fast", 0.5, responses=["a", "c"]),
    ]
    lines = bench.ratio_lines(results)
    assert any("instruct train` default vs --exact: 2.500x" in x and "PASS" in x for x in lines)
    respond = next(x for x in lines if "instruct respond" in x)
    assert "25.000x" in respond and "responses/s" in respond and "target >= 30.0x, MISS" in respond
    checks = bench.loss_checks(results)
    assert any("1 of 2 responses identical (MISS)" in x for x in checks), checks
    assert "| gpt2-small | CPU | `ftkit instruct respond` | fast (fp32) | 0.50 responses/s |" in (
        bench.compare_table(results)
    )
