"""The class summary: a CSV (a row per submission, a column per exercise) and an HTML report."""

from __future__ import annotations

import base64
import csv
import html
import io
from collections import Counter
from pathlib import Path


def write_summary(rows: list[dict], out: Path) -> None:
    # A column per exercise some submission provides.
    exercises = list(
        dict.fromkeys(
            n for r in rows for n, s in r.get("statuses", {}).items() if s != "not provided"
        )
    )
    with (out / "summary.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["submission", "score", "max_score", "verdict", *exercises])
        for r in rows:
            statuses = r.get("statuses", {})
            writer.writerow(
                [r["name"], r["score"], r["max_score"], r["verdict"]]
                + [statuses.get(n, "") for n in exercises]
            )
    (out / "summary.html").write_text(render_html(rows, exercises), encoding="utf-8")


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode()


def first_failures(rows: list[dict]) -> Counter:
    """Each submission's first failure message (or its verdict), counted across the class."""
    found: Counter = Counter()
    for r in rows:
        if r.get("verdict"):
            found[r["verdict"].split(":")[0][:80]] += 1
        elif r.get("messages"):
            found[next(iter(r["messages"].values()))[:80]] += 1
    return found


def render_html(rows: list[dict], exercises: list[str]) -> str:
    """Score distribution, solve rate per exercise, the most common first failures."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plots = []
    fractions = [r["score"] / r["max_score"] if r["max_score"] else 0.0 for r in rows]
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.hist([100 * f for f in fractions], bins=10, range=(0, 100), color="#4477aa")
    ax.set(xlabel="score (% of provided exercises)", ylabel="submissions", title="Scores")
    plots.append(_png(fig))
    plt.close(fig)
    rate = [
        sum(r.get("statuses", {}).get(n) == "solved" for r in rows)
        / max(1, sum(n in r.get("statuses", {}) for r in rows))
        for n in exercises
    ]
    fig, ax = plt.subplots(figsize=(6, 0.3 * len(exercises) + 1))
    ax.barh(exercises[::-1], [100 * x for x in rate[::-1]], color="#228833")
    ax.set(xlabel="solved (% of submissions)", xlim=(0, 100), title="Solve rate per exercise")
    plots.append(_png(fig))
    plt.close(fig)
    common = first_failures(rows).most_common(8)
    if common:
        fig, ax = plt.subplots(figsize=(6, 0.4 * len(common) + 1))
        ax.barh([m[:60] for m, _ in common][::-1], [c for _, c in common][::-1], color="#ee6677")
        ax.set(xlabel="submissions", title="Most common first failures")
        plots.append(_png(fig))
        plt.close(fig)
    body = "".join(f'<img src="data:image/png;base64,{p}">' for p in plots)
    header = "".join(f"<th>{html.escape(h)}</th>" for h in ["submission", "score", "verdict"])
    table = "".join(
        f"<tr><td>{html.escape(r['name'])}</td><td>{r['score']:g}/{r['max_score']:g}</td>"
        f"<td>{html.escape(r['verdict'] or '')}</td></tr>"
        for r in rows
    )
    style = "body{font-family:sans-serif;margin:2em} img{margin:1em;vertical-align:top} td,th{padding:2px 8px;text-align:left}"
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>ftkit grade</title>"
        f"<style>{style}</style></head><body><h1>Class summary: {len(rows)} submissions</h1>"
        f"{body}<table><tr>{header}</tr>{table}</table></body></html>"
    )
