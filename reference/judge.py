"""Score model responses with a local LLM judge served by Ollama (book §7.8).

The book asks Llama 3 (8B, via Ollama's REST API) to rate each fine-tuned response
from 0 to 100 against the data set's correct output, then averages the scores.
`query_model` speaks Ollama's `/api/chat` wire format: the answer comes back as
NDJSON, one `{"message": {"content": ...}, "done": ...}` object per line, whose
pieces are joined. The kit's judge client (retries, clear errors when Ollama is
down, a resumable scores file, a tolerant score parser) is `ftkit/ollama.py`.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Sequence

from tqdm import tqdm

from reference.instruction_data import format_input

DEFAULT_URL = "http://localhost:11434/api/chat"  # Ollama's chat endpoint on this machine
# The book's settings: deterministic answers (seed, temperature 0) and a context
# large enough for the prompt with the entry, the correct output and the response.
JUDGE_OPTIONS = {"seed": 123, "temperature": 0, "num_ctx": 2048}
# The book's scoring prompt, word for word; {input} is `format_input(entry)`.
JUDGE_PROMPT = (
    "Given the input `{input}` "
    "and correct output `{output}`, "
    "score the model response `{response}`"
    " on a scale from 0 to 100, where 100 is the best score. "
    "Respond with the integer number only."
)


def query_model(prompt: str, model: str = "llama3", url: str = DEFAULT_URL) -> str:
    """Send `prompt` to an Ollama chat model and return its whole answer (book §7.8)."""
    data = {  # kit: the options and prompt are defined once above (ftkit.ollama uses them too)
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "options": JUDGE_OPTIONS,
    }
    payload = json.dumps(data).encode("utf-8")
    request = urllib.request.Request(url, data=payload, method="POST")
    request.add_header("Content-Type", "application/json")
    response_data = ""
    with urllib.request.urlopen(request) as response:
        while True:  # streamed: one JSON object per line
            line = response.readline().decode("utf-8")
            if not line:
                break
            response_json = json.loads(line)
            response_data += response_json["message"]["content"]
    return response_data


def generate_model_scores(
    json_data: Sequence[dict], json_key: str, model: str = "llama3"
) -> list[int]:
    """Ask the judge to score `entry[json_key]` for every entry; answers that are no integer are skipped (book §7.8)."""
    scores = []
    for entry in tqdm(json_data, desc="Scoring entries"):
        prompt = JUDGE_PROMPT.format(  # kit: the book's f-string, defined once above
            input=format_input(entry), output=entry["output"], response=entry[json_key]
        )
        score = query_model(prompt, model)
        try:
            scores.append(int(score))
        except ValueError:
            print(f"Could not convert score: {score}")
            continue
    return scores
