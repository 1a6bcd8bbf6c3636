"""A fake Ollama server on loopback that speaks the real REST wire format, for judge tests.

Built on pytest-httpserver (a real HTTP server in a thread), so tests exercise the
real client code path: sockets, chunked NDJSON streams, status codes, timeouts.

Wire format (Ollama's docs/api.md):
- `POST /api/chat` `{"model", "messages": [{"role": "user", "content"}], "options", "stream"}`
  streams NDJSON lines `{"model", "created_at", "message": {"role": "assistant",
  "content": <piece>}, "done": false}` and a final `{"done": true, "done_reason": "stop", ...}`;
  with `"stream": false` one JSON object holds the whole `message.content`.
- A model that is not pulled: HTTP 404 `{"error": "model \"x\" not found, try pulling it first"}`.
- `GET /api/tags` -> `{"models": [{"name": "llama3:latest", "model": "llama3:latest", ...}]}`.

Use `with running_fake_ollama(answer=...) as fake:` (a fresh threaded server), the
`fake_ollama` fixture (register it from a conftest), or `FakeOllama(server)` on any
`pytest_httpserver.HTTPServer`; give the client `fake.url`.
Script answers with `answer` (a string or a function of the prompt) and failures with
`faults` (consumed one per chat request) or `fault_for(prompt)` (persistent).
"""

from __future__ import annotations

import atexit
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

FAULTS = ("400", "500", "drop", "slow", "error-line", "no-done", "garbled")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def _canonical(name: str) -> str:
    return name if ":" in name else f"{name}:latest"


class FakeOllama:
    """Scripted Ollama: pulled `models`, an `answer` per prompt, and faults on demand.

    Faults, one per chat request from the `faults` list (then `fault_for(prompt)`):
    "400" (HTTP 400, a request error no retry fixes), "500" (HTTP 500 with an error body), "drop" (stream cut off mid-way without the
    closing chunk), "slow" (waits `slow_s` before answering), "error-line" (an
    `{"error": ...}` line mid-stream, as Ollama reports runner crashes), "no-done"
    (stream ends cleanly without `done: true`), "garbled" (a line that is not JSON).
    """

    def __init__(
        self,
        server: HTTPServer,
        *,
        models: tuple[str, ...] = ("llama3:latest",),
        answer: str | Callable[[str], str] = "50",
        chunk_size: int = 3,
        slow_s: float = 1.0,
    ):
        self.server = server
        self.models = list(models)
        self.answer = answer
        self.chunk_size = chunk_size
        self.slow_s = slow_s
        self.faults: list[str] = []
        self.fault_for: Callable[[str], str | None] | None = None
        self.requests: list[dict] = []  # every /api/chat payload received
        self.served: list[str] = []  # prompts whose full answer was sent
        self.tags_calls = 0
        self._lock = threading.Lock()
        server.expect_request("/api/chat", method="POST").respond_with_handler(self._chat)
        server.expect_request("/api/tags", method="GET").respond_with_handler(self._tags)

    @property
    def url(self) -> str:
        """The chat URL to give the client."""
        return self.server.url_for("/api/chat")

    def prompts(self) -> list[str]:
        """Prompts of all chat requests received, retries included."""
        return [r["messages"][-1]["content"] for r in self.requests]

    # --- handlers ---------------------------------------------------------------------

    def _tags(self, request: Request) -> Response:
        self.tags_calls += 1
        models = [
            {
                "name": name,
                "model": name,
                "modified_at": _now(),
                "size": 4661224676,
                "digest": "0" * 64,
                "details": {"format": "gguf", "family": "llama", "parameter_size": "8.0B"},
            }
            for name in self.models
        ]
        return Response(json.dumps({"models": models}), mimetype="application/json")

    def _chat(self, request: Request) -> Response:
        payload = json.loads(request.get_data())
        with self._lock:
            self.requests.append(payload)
        model, messages = payload.get("model"), payload.get("messages")
        if not model or not isinstance(messages, list) or not messages:
            return self._error(400, "model and messages are required")
        if _canonical(model) not in {_canonical(m) for m in self.models}:
            # Ollama's own words and status for a model that is not pulled.
            return self._error(404, f'model "{model}" not found, try pulling it first')
        prompt = messages[-1]["content"]
        with self._lock:
            fault = self.faults.pop(0) if self.faults else None
        if fault is None and self.fault_for is not None:
            fault = self.fault_for(prompt)
        if fault == "400":
            return self._error(400, "invalid options: the fake refuses this request")
        if fault == "500":
            return self._error(500, "llama runner process has terminated: exit status 2")
        if fault == "slow":
            time.sleep(self.slow_s)
        text = self.answer(prompt) if callable(self.answer) else self.answer
        if payload.get("stream", True) is False:
            if fault is None or fault == "slow":
                self.served.append(prompt)
            body = {
                **self._line(model, text, done=True),
                "done_reason": "stop",
            }
            return Response(json.dumps(body), mimetype="application/json")
        return Response(self._stream(model, prompt, text, fault), mimetype="application/x-ndjson")

    def _stream(self, model: str, prompt: str, text: str, fault: str | None) -> Iterator[bytes]:
        pieces = [text[i : i + self.chunk_size] for i in range(0, len(text), self.chunk_size)]
        pieces = pieces or [""]
        for n, piece in enumerate(pieces):
            if n == max(1, len(pieces) // 2) or len(pieces) == 1:
                if fault == "drop":
                    # Raising after the headers went out makes the server close the
                    # connection without the final chunk: the client sees a cut stream.
                    raise ConnectionAbortedError("fake Ollama drops the stream")
                if fault == "error-line":
                    yield (
                        json.dumps({"error": "an error was encountered while running the model"})
                        + "\n"
                    ).encode()
                    return
                if fault == "garbled":
                    yield b'{"model": "llama3", "message": {"cont\n'
            yield (json.dumps(self._line(model, piece, done=False)) + "\n").encode()
        if fault == "no-done":
            return
        final = {**self._line(model, "", done=True), "done_reason": "stop", "eval_count": 3}
        self.served.append(prompt)
        yield (json.dumps(final) + "\n").encode()

    @staticmethod
    def _line(model: str, content: str, *, done: bool) -> dict:
        return {
            "model": model,
            "created_at": _now(),
            "message": {"role": "assistant", "content": content},
            "done": done,
        }

    @staticmethod
    def _error(status: int, message: str) -> Response:
        return Response(json.dumps({"error": message}), status=status, mimetype="application/json")


@pytest.fixture
def fake_ollama() -> Iterator[FakeOllama]:
    """A fresh threaded fake Ollama with `llama3:latest` pulled, answering "50"."""
    with running_fake_ollama() as fake:
        yield fake


_shared: HTTPServer | None = None


def _shared_server() -> HTTPServer:
    # One threaded server per process, cleared between fakes: stopping a werkzeug server
    # waits for its 0.5 s poll loop, which would cost every test half a second.
    global _shared
    if _shared is None or not _shared.is_running():
        _shared = HTTPServer(host="127.0.0.1", port=0, threaded=True)
        _shared.start()
        atexit.register(_shared.stop)
    return _shared


@contextmanager
def running_fake_ollama(**kwargs) -> Iterator[FakeOllama]:
    """A fake Ollama for the `with` block (kwargs: FakeOllama's), on a cleared loopback server."""
    server = _shared_server()
    server.clear()
    try:
        yield FakeOllama(server, **kwargs)
    finally:
        server.clear()
