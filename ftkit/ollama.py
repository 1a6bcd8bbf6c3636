"""The judge client around the book's `query_model` and prompt (book §7.8): what a long run needs.

The book's `reference/judge.py` sends one request and joins the answer. Scoring a
test set of 110 (or 5,000) entries with a local 8B model needs more, and it lives
here: `chat` speaks Ollama's `/api/chat` wire format (NDJSON stream of
`{"message": {"content": ...}, "done": ...}` lines), retries transient failures,
and explains how to start Ollama or pull the model when it cannot be used;
`score_responses` appends each score to a JSONL file as it arrives, so a crash or
Ctrl-C during a long scoring run loses nothing; `parse_score` reads the numbers
judges actually answer ("Score: 85", "8/10", a `<think>` block first).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import requests
import urllib3
from tqdm import tqdm

from ftkit.io.files import atomic_path, write_bytes_atomic
from reference.instruction_data import format_input
from reference.judge import DEFAULT_URL, JUDGE_OPTIONS, JUDGE_PROMPT

DEFAULT_TIMEOUT = 120.0
OLLAMA_PORT = 11434  # `ollama serve`'s default


class OllamaError(RuntimeError):
    """Ollama cannot answer: not running, model not pulled, or failing after retries."""


START_HINT = "Start it with `ollama serve` (or open the Ollama app)"


def _start_hint(model: str) -> str:
    return f"{START_HINT}, then pull the judge model with `ollama pull {model}`."


def _unreachable(url: str, model: str) -> str:
    """Nothing answers at `url`: say it as what it is, and how to start Ollama *there*."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    where = f"{parts.hostname}:{port}"
    if port == OLLAMA_PORT:
        return f"Ollama is not reachable at {url} (connection refused). {_start_hint(model)}"
    return (
        f"Ollama is not reachable at {url}: nothing is listening on {where} (connection "
        f"refused). Ollama's own port is {OLLAMA_PORT}: check "
        f"--judge-url, or start Ollama on this port with `OLLAMA_HOST={where} ollama serve`, "
        f"then pull the judge model with `ollama pull {model}`."
    )


def _http_error(method: str, where: str, response: requests.Response) -> OllamaError:
    """A non-2xx answer: Ollama's own error text, or that the server is not Ollama at all."""
    kind = response.headers.get("Content-Type", "").split(";")[0].strip()
    if "json" not in kind:  # Ollama answers every request, errors included, in JSON
        return OllamaError(
            f"{method} {where} answered HTTP {response.status_code} with "
            f"{kind or 'a body that is not JSON'}: the server at {urlsplit(where).netloc} is "
            f"not an Ollama server (check --judge-url; Ollama's is {DEFAULT_URL})"
        )
    return OllamaError(
        f"{method} {where} answered HTTP {response.status_code}: {_error_text(response)}"
    )


def check_url(url: str) -> str:
    """`url` when it is an http(s) URL with a host; else an `OllamaError` naming it malformed."""
    parts = urlsplit(str(url))
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise OllamaError(
            f"the judge URL {url!r} (--judge-url) is malformed: expected an http(s) URL "
            f"such as {DEFAULT_URL}"
        )
    return url


def tags_url(chat_url: str) -> str:
    """The `/api/tags` URL (list of pulled models) of the server behind a `/api/chat` URL."""
    parts = urlsplit(chat_url)
    path = parts.path.rstrip("/")
    prefix = path[: -len("/api/chat")] if path.endswith("/api/chat") else ""
    return urlunsplit((parts.scheme, parts.netloc, f"{prefix}/api/tags", "", ""))


def _model_matches(wanted: str, name: str) -> bool:
    # Ollama's tag defaults to "latest": "llama3" is the model listed as "llama3:latest".
    full = wanted if ":" in wanted else f"{wanted}:latest"
    return name in (wanted, full)


def list_models(
    url: str = DEFAULT_URL, *, timeout: float = 10.0, model: str = "llama3"
) -> list[str]:
    """Names of the models pulled into the Ollama server behind `url` (its `/api/tags`).

    `model` is the judge model the hint says to pull when Ollama is not reachable.
    """
    where = tags_url(check_url(url))
    try:
        response = requests.get(where, timeout=timeout)
    except requests.ConnectionError as err:
        raise OllamaError(_unreachable(where, model)) from err
    except requests.Timeout as err:
        raise OllamaError(
            f"GET {where}: no answer within {timeout:g} s: something accepts connections "
            "there but does not answer like Ollama (check --judge-url)"
        ) from err
    except requests.RequestException as err:
        raise OllamaError(f"GET {where} failed ({type(err).__name__}: {err})") from err
    if response.status_code != 200:
        raise _http_error("GET", where, response)
    try:
        models = response.json()["models"]
        return [m.get("name") or m["model"] for m in models]
    except (ValueError, KeyError, TypeError) as err:
        raise OllamaError(
            f"GET {where} did not answer Ollama's model list: {response.text[:200]!r}"
        ) from err


def ensure_model_available(
    model: str = "llama3", url: str = DEFAULT_URL, *, timeout: float = 10.0
) -> None:
    """Fail early, with what to run, when Ollama is down or `model` is not pulled."""
    names = list_models(url, timeout=timeout, model=model)
    if not any(_model_matches(model, name) for name in names):
        raise OllamaError(
            f"the judge model {model!r} is not pulled into the Ollama server at "
            f"{tags_url(url)} (it has: {', '.join(names) or 'no models'}). "
            f"Run `ollama pull {model}`."
        )


def _error_text(response: requests.Response) -> str:
    try:
        return str(response.json().get("error", response.text))
    except (ValueError, AttributeError):
        return response.text[:200]


class _Transient(Exception):
    """A failure worth retrying: 5xx, reset or dropped connection, timeout, error mid-stream."""


def _read_chat(response: requests.Response) -> str:
    """Join the `message.content` of each NDJSON line; a stream must end with `done: true`."""
    text = []
    for raw in response.iter_lines():
        if not raw.strip():
            continue
        try:
            line = json.loads(raw)
        except ValueError as err:
            raise _Transient(f"a garbled line in the stream: {raw[:80]!r}") from err
        if "error" in line:
            # Ollama reports failures during generation as an error line in the stream.
            raise _Transient(f"Ollama reported an error mid-stream: {line['error']}")
        text.append(line.get("message", {}).get("content", ""))
        if line.get("done"):
            return "".join(text)
    raise _Transient("the stream ended before Ollama's final `done: true` line")


def _refused(err: requests.ConnectionError) -> bool:
    """Whether the connection was never made (refused, unknown host), not reset mid-way."""
    reason = getattr(err.args[0], "reason", None) if err.args else None
    return isinstance(reason, urllib3.exceptions.NewConnectionError) or isinstance(
        err, requests.exceptions.ConnectTimeout
    )


def _post_once(url: str, payload: dict, model: str, timeout: float) -> str:
    try:
        with requests.post(url, json=payload, stream=True, timeout=timeout) as response:
            if response.status_code == 404:
                # Ollama answers 404 {"error": "model ... not found, try pulling it first"}.
                ensure_model_available(model, url)
                raise _http_error("POST", url, response)
            if response.status_code >= 500:
                raise _Transient(f"HTTP {response.status_code}: {_error_text(response)}")
            if response.status_code != 200:
                raise _http_error("POST", url, response)
            return _read_chat(response)
    except requests.ConnectionError as err:
        if _refused(err):
            # Nothing listens there: retrying will not help, telling the user what to run will.
            raise OllamaError(_unreachable(url, model)) from err
        raise _Transient(f"connection failed ({type(err).__name__}: {err})") from err
    except requests.Timeout as err:
        raise _Transient(
            f"no answer within {timeout:g} s ({type(err).__name__}; --judge-timeout waits longer)"
        ) from err
    except requests.RequestException as err:  # e.g. ChunkedEncodingError: stream cut off
        raise _Transient(f"the stream was cut off ({type(err).__name__})") from err


def chat(
    prompt: str,
    model: str = "llama3",
    url: str = DEFAULT_URL,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    retries: int = 3,
    backoff: float = 1.0,
) -> str:
    """The book's `query_model` with retries: the whole answer of an Ollama chat model (book §7.8).

    The answer is streamed as NDJSON and joined. Transient failures (connection reset,
    HTTP 5xx, a stream cut off, a timeout) are retried `retries` times, waiting
    `backoff`, 2×`backoff`, … seconds; then an `OllamaError` says what failed and how to
    start Ollama. A model that is not pulled is an `OllamaError` at once.
    """
    check_url(url)
    if not timeout > 0:
        raise OllamaError(
            f"the judge timeout must be a positive number of seconds, got {timeout!r}"
        )
    payload = {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "options": dict(JUDGE_OPTIONS),
        "stream": True,
    }
    failures = []
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(backoff * 2 ** (attempt - 1))
        try:
            return _post_once(url, payload, model, timeout)
        except _Transient as err:
            failures.append(str(err))
    reachable = True
    try:
        list_models(url, timeout=min(timeout, 10.0), model=model)
    except OllamaError:
        reachable = False
    where = f"Ollama is not reachable at {url}. " if not reachable else ""
    raise OllamaError(
        f"{where}Querying {model!r} at {url} failed {len(failures)} times; last error: "
        f"{failures[-1]}. {_start_hint(model) if not reachable else ''}".rstrip()
    )


def judge_prompt(entry: dict, json_key: str) -> str:
    """The book's scoring prompt for one entry (book §7.8)."""
    return JUDGE_PROMPT.format(
        input=format_input(entry), output=entry["output"], response=entry[json_key]
    )


_THINK = re.compile(r"<think>.*?</think>", re.S | re.I)
_SCALE = re.compile(r"\b0\s*(?:-|–|to)\s*100\b", re.I)
_NUMBER = r"[-+]?\d+(?:\.\d+)?"
_FRACTION = rf"({_NUMBER})(?:\s*(?:/|out of)\s*(\d+))?"
_KEYWORD = re.compile(
    rf"\b(?:score|rating|rate|grade)\b[\W_]{{0,6}}(?:is|of)?[\s*:]*{_FRACTION}", re.I
)
_CANDIDATE = re.compile(rf"(?<![\w.]){_FRACTION}", re.I)


def parse_score(text: str) -> int | None:
    """The judge's 0–100 score in `text`, or None when there is no usable number.

    Handles what judges actually answer: a bare "85", "Score: 85", "**85**", "85/100",
    "8/10" (rescaled to 80), "85.6" (rounded to 86), and a `<think>…</think>` block
    before the answer (DeepSeek-R1). The number after "score"/"rating" wins, else the
    first number ("0 to 100" scale phrases are not candidates). Out-of-range numbers
    (150, -5) give None rather than a clamped score: they mean the judge did not follow
    the scale, and clamping would hide that in the average.
    """
    if not isinstance(text, str):
        return None
    body = _THINK.sub(" ", text)
    if re.search(r"<think>", body, re.I):
        return None  # unfinished reasoning: the answer never came
    body = _SCALE.sub(" ", body)
    keyword = _KEYWORD.search(body)
    match = keyword or _CANDIDATE.search(body)
    if match is None:
        return None
    value = float(match.group(1))
    if match.group(2):
        denominator = int(match.group(2))
        if denominator == 0:
            return None
        value = value * 100 / denominator
    if not math.isfinite(value) or not 0 <= value <= 100:
        return None
    return int(math.floor(value + 0.5))


def _entry_id(entry: dict, json_key: str) -> str:
    """A short hash of what is scored, so a scores file is never applied to other data."""
    key = {k: entry.get(k, "") for k in ("instruction", "input", "output")}
    key["response"] = entry[json_key]
    blob = json.dumps(key, sort_keys=True, ensure_ascii=False).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:16]


def _check_entries(json_data: Sequence[dict], json_key: str) -> None:
    if isinstance(json_data, dict | str) or not isinstance(json_data, Sequence):
        raise TypeError(f"json_data must be a list of entries, got {type(json_data).__name__}")
    for i, entry in enumerate(json_data):
        if not isinstance(entry, dict):
            raise TypeError(f"entry {i}: expected a dict, got {type(entry).__name__}")
        for key in ("instruction", "output", json_key):
            if key not in entry:
                raise KeyError(f"entry {i} has no key {key!r} (it has {sorted(entry)})")
            if not isinstance(entry[key], str):
                raise TypeError(
                    f"entry {i}: {key!r} must be a string, got {type(entry[key]).__name__}"
                )


def _load_score_records(path: str | os.PathLike, json_data, json_key: str, model: str) -> dict:
    """Records already in a scores JSONL file, by entry index; checks they fit `json_data`.

    A last line cut off by a crash is dropped (and the file rewritten without it), so
    appending resumes cleanly. A record of another entry or another judge is an error.
    """
    path = Path(path)
    if not path.exists():
        return {}
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    records: dict[int, dict] = {}
    good: list[bytes] = []
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            index = int(record["index"])
        except (ValueError, KeyError, TypeError) as err:
            if lineno == len(lines):  # no newline after it: a write interrupted mid-way
                break
            raise ValueError(f"{path}:{lineno}: not a score record ({err}): {line[:80]!r}") from err
        if not 0 <= index < len(json_data):
            raise ValueError(
                f"{path}:{lineno}: entry index {index} is outside the {len(json_data)} entries "
                "being scored; is this the scores file of another data set?"
            )
        expected = _entry_id(json_data[index], json_key)
        if record.get("id") != expected:
            raise ValueError(
                f"{path}:{lineno}: entry {index} was scored for different data (id "
                f"{record.get('id')} vs {expected}); use a new scores file for this data"
            )
        if record.get("model", model) != model:
            raise ValueError(
                f"{path}:{lineno}: entry {index} was scored by judge {record.get('model')!r}, "
                f"not {model!r}; use a new scores file per judge model"
            )
        records[index] = record  # a later line (an answer asked again) replaces an earlier one
        good.append(line)
    kept = b"".join(line + b"\n" for line in good)
    if kept != raw:
        write_bytes_atomic(path, kept)
    return records


def score_responses(
    json_data: Sequence[dict],
    json_key: str,
    model: str = "llama3",
    url: str = DEFAULT_URL,
    *,
    scores_path: str | os.PathLike | None = None,
    timeout: float | None = None,
    progress: bool = True,
) -> list[int]:
    """The book's `generate_model_scores`, resumable: each `entry[json_key]`'s score (book §7.8).

    Scores come back in entry order. Empty responses score 0 without a query (as the book's evaluation script does). An
    answer with no usable number is reported and left out of the list, as in the book
    ("Number of scores: N of M"). With `scores_path`, each score is appended to a JSONL
    file as it arrives (`index`, `id`, `model`, `score` or null, `raw` answer) and a
    rerun scores the entries not yet in it and asks again those recorded with no
    usable score (the newer record replaces the older). `timeout`: seconds per answer
    (default DEFAULT_TIMEOUT; `--judge-timeout`).
    """
    _check_entries(json_data, json_key)
    done = _load_score_records(scores_path, json_data, json_key, model) if scores_path else {}
    # Entries never scored, and those whose answer had no usable number: asked (again).
    todo = [i for i in range(len(json_data)) if i not in done or done[i]["score"] is None]
    if any(json_data[i][json_key].strip() for i in todo):
        ensure_model_available(model, url)
    sink = open(scores_path, "a", encoding="utf-8") if scores_path else None  # noqa: SIM115
    try:
        bar = tqdm(
            total=len(json_data),
            initial=len(json_data) - len(todo),
            desc="Scoring entries",
            disable=not progress,
        )
        with bar:
            for i in todo:
                entry = json_data[i]
                if entry[json_key].strip() == "":
                    raw, score = "", 0
                else:
                    raw = chat(
                        judge_prompt(entry, json_key),
                        model,
                        url,
                        timeout=timeout or DEFAULT_TIMEOUT,
                    )
                    score = parse_score(raw)
                    if score is None:
                        tqdm.write(f"Could not convert score: {raw!r} (entry {i})", file=sys.stderr)
                record = {
                    "index": i,
                    "id": _entry_id(entry, json_key),
                    "model": model,
                    "score": score,
                    "raw": raw,
                }
                done[i] = record
                if sink is not None:
                    sink.write(json.dumps(record, ensure_ascii=False) + "\n")
                    sink.flush()
                    os.fsync(sink.fileno())
                bar.update(1)
    finally:
        if sink is not None:
            sink.close()
    unparsable = [i for i in sorted(done) if done[i]["score"] is None]
    if unparsable:
        print(
            f"{len(unparsable)} of {len(json_data)} answers had no usable score "
            f"(entries {unparsable[:10]}{' …' if len(unparsable) > 10 else ''}); they are "
            "recorded as such and asked again when this is rerun",
            file=sys.stderr,
        )
    return [done[i]["score"] for i in range(len(json_data)) if done[i]["score"] is not None]


def summarize_scores(scores: Sequence[int], total: int | None = None) -> str:
    """Print and return the book's summary: `Number of scores: N of M`, `Average score: X.XX`."""
    total = len(scores) if total is None else total
    average = f"{sum(scores) / len(scores):.2f}" if scores else "n/a (no scores)"
    text = f"Number of scores: {len(scores)} of {total}\nAverage score: {average}"
    print(text)
    return text


def plot_score_histogram(
    scores: Sequence[int], path: str | os.PathLike, *, title: str | None = None
) -> Path:
    """Write a PNG histogram of 0–100 scores in bins of 10, atomically; returns its path."""
    from matplotlib.figure import Figure  # lazy: plotting is the only user of matplotlib

    path = Path(path)
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    ax.hist(list(scores), bins=range(0, 101, 10), edgecolor="black")
    ax.set_xlim(0, 100)
    ax.set_xlabel("Score (0–100)")
    ax.set_ylabel("Number of responses")
    ax.set_title(title or f"Judge scores (n={len(scores)})")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path
