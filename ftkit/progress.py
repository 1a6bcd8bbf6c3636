"""The learner's progress: which exercises are solved, failing or not started, and what to do next.

An *exercise* is one public function or class of `reference/` that has a stub in
`exercises/`. A test counts towards every exercise name it looked up through the
`impl` fixture; an exercise's status comes from the outcomes of those tests.
"""

from __future__ import annotations

import ast
import inspect
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from ftkit.impl import module_of, public_names, reference_modules

# Book stages, in the order a learner meets them, and the reference modules behind each.
STAGES: dict[str, tuple[str, ...]] = {
    "model": ("model", "weights"),
    "generation": ("generation",),
    "training": ("training",),
    "data": ("spam_data", "instruction_data"),
    "collate": ("collate",),
    "classification": ("classifier",),
    "instruction SFT": (),
    "evaluation": ("evaluation", "judge"),
    "LoRA": ("lora",),
    "book exercises": (),
}
# Names whose tests belong to the instruction-SFT stage rather than their module's.
SFT_NAMES = ("InstructionDataset", "create_instruction_loaders")

SOLVED, FAILING, NOT_STARTED, NOT_PROVIDED, PARTIAL = (
    "solved",
    "failing",
    "not started",
    "not provided",
    "in progress",
)
# Outcome of a failed `beyond_book` test: reported, but the book's behaviour is what solves an exercise.
EXTRA_FAILED = "failed (kit extra)"
SECTION = re.compile(r"(?:§\s?\d+\.\d+|[Ss]ection \d+\.\d+|[Aa]ppendix [A-E]|[Ee]xercise \d\.\d)")


# The book's end-of-chapter exercises; tests carry `@pytest.mark.book_exercise("7.2")`.
BOOK_EXERCISES = {
    "6.1": "Pad the spam datasets to the full context (1024) instead of the longest text (book §6.9, Exercise 6.1)",
    "6.2": "Fine-tune the whole model instead of the last block only (book §6.9, Exercise 6.2)",
    "6.3": "Classify on the first token's output instead of the last (book §6.9, Exercise 6.3)",
    "7.1": "Use the Phi-3 prompt style (<|user|> / <|assistant|>) (book §7.9, Exercise 7.1)",
    "7.2": "Mask the instruction in the targets with -100 (book §7.9, Exercise 7.2)",
    "7.3": "Fine-tune on the original Alpaca dataset, allowed_max_length=512 (book §7.9, Exercise 7.3)",
    "7.4": "Fine-tune with LoRA (book Appendix E, Exercise 7.4)",
}


def stage_of(name: str) -> str:
    """The book stage an exercise name belongs to."""
    if name in SFT_NAMES:
        return "instruction SFT"
    module = module_of().get(name, "")
    return next((stage for stage, mods in STAGES.items() if module in mods), "other")


def stage_modules(stage: str) -> tuple[str, ...]:
    """Reference modules of a stage (case-insensitive name); error listing stages if unknown."""
    for known, mods in STAGES.items():
        if known.lower() == stage.lower():
            return mods + (("instruction_data", "instruct") if known == "instruction SFT" else ())
    raise ValueError(f"unknown stage {stage!r}; choose one of {list(STAGES)}")


@dataclass
class Exercise:
    name: str
    module: str
    stage: str
    file: str
    line: int
    hint: str
    section: str
    outcomes: dict = field(default_factory=dict)  # test id -> outcome
    message: str = ""

    @property
    def status(self) -> str:
        values = list(self.outcomes.values())
        if not values:
            return NOT_STARTED
        if "failed" in values:
            return FAILING
        if all(v == "not provided" for v in values):
            return NOT_PROVIDED
        if "passed" not in values:
            return NOT_STARTED
        # A helper the implementation does not provide (e.g. the book's code lacks a kit
        # extra) does not make the exercise unfinished: its own tests passed.
        done = ("passed", EXTRA_FAILED, "not provided")
        return SOLVED if all(v in done for v in values) else PARTIAL


def stub_hints(module_file: Path) -> dict[str, tuple[int, str]]:
    """Map each function/method in a stub file to (line, NotImplementedError message)."""
    tree = ast.parse(module_file.read_text(encoding="utf-8"))
    hints: dict[str, tuple[int, str]] = {}
    for top in tree.body:
        if not isinstance(top, ast.FunctionDef | ast.ClassDef):
            continue
        for node in ast.walk(top):
            if (
                isinstance(node, ast.Raise)
                and isinstance(node.exc, ast.Call)
                and getattr(node.exc.func, "id", None) == "NotImplementedError"
                and node.exc.args
            ):
                try:
                    message = ast.literal_eval(node.exc.args[0])
                except ValueError:
                    message = ast.unparse(node.exc.args[0])
                hints.setdefault(top.name, (node.lineno, str(message)))
    return hints


def catalog(package: str = "exercises") -> dict[str, Exercise]:
    """Every exercise, in book order, located in `package` where it has the module, else in exercises/."""
    import importlib

    exercises: dict[str, Exercise] = {}
    ordered = [m for mods in STAGES.values() for m in mods]
    for short in ordered:
        if short not in reference_modules():
            continue
        try:
            stub_module = importlib.import_module(f"exercises.{short}")
        except ModuleNotFoundError:
            continue
        stub_file = Path(inspect.getfile(stub_module))
        hints = stub_hints(stub_file)
        where = stub_file
        try:
            own = importlib.import_module(f"{package}.{short}")
            where = Path(inspect.getfile(own))
        except (ModuleNotFoundError, TypeError):
            pass
        own_lines = _def_lines(where)
        for name in public_names(reference_modules()[short]):
            if name not in hints:
                continue  # not learner work (re-exported tooling)
            line, hint = hints[name]
            match = SECTION.search(hint)
            exercises[name] = Exercise(
                name=name,
                module=short,
                stage=stage_of(name),
                file=str(where),
                line=own_lines.get(name, line),
                hint=hint,
                section=match.group(0) if match else "",
            )
    for number, hint in BOOK_EXERCISES.items():
        name = f"Exercise {number}"
        exercises[name] = Exercise(name, "", "book exercises", "", 0, hint, f"Exercise {number}")
    return exercises


def _def_lines(path: Path) -> dict[str, int]:
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError):
        return {}
    return {
        node.name: node.lineno
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.ClassDef)
    }


def next_exercise(exercises: dict[str, Exercise]) -> Exercise | None:
    """The first exercise in book order that is failing, in progress or not started."""
    for status in (FAILING, PARTIAL, NOT_STARTED):
        for ex in exercises.values():
            if ex.status == status and ex.outcomes:
                return ex
    return next((ex for ex in exercises.values() if ex.status == NOT_STARTED), None)


def render_table(exercises: dict[str, Exercise]) -> str:
    """The per-stage table: solved / failing / not started counts."""
    rows = []
    for stage in list(STAGES) + ["other"]:
        members = [ex for ex in exercises.values() if ex.stage == stage]
        if not members:
            continue
        count = {
            s: sum(ex.status == s for ex in members)
            for s in (SOLVED, FAILING, PARTIAL, NOT_STARTED, NOT_PROVIDED)
        }
        rows.append((stage, len(members), count))
    head = f"{'stage':<18}{'solved':>8}{'failing':>9}{'in progress':>13}{'not started':>13}{'not provided':>14}"
    lines = [head, "-" * len(head)]
    for stage, total, c in rows:
        lines.append(
            f"{stage:<18}{c[SOLVED]:>5}/{total:<2}{c[FAILING]:>9}{c[PARTIAL]:>13}{c[NOT_STARTED]:>13}{c[NOT_PROVIDED]:>14}"
        )
    return "\n".join(lines)


def render_next(ex: Exercise | None, exercises: dict[str, Exercise] | None = None) -> str:
    """The "Next:" lines: what to do next, or how the run ended when nothing is left."""
    if ex is None:
        missing = [e for e in (exercises or {}).values() if e.status == NOT_PROVIDED]
        if missing:
            return (
                f"Every exercise this implementation provides is solved; {len(missing)} "
                "not provided (see the table)."
            )
        return "Every exercise is solved. Well done!"
    status = {FAILING: "fix", PARTIAL: "finish", NOT_STARTED: "write"}.get(ex.status, "write")
    text = [f"Next: {status} `{ex.name}` ({ex.stage}, {ex.section or 'see the hint'})"]
    if ex.file:
        text.append(f"  {ex.file}:{ex.line}")
    text.append(f"  hint: {ex.hint}")
    if ex.message:
        text.append(f"  last failure: {ex.message.splitlines()[0][:200]}")
    return "\n".join(text)


def write_report(exercises: dict[str, Exercise], path: Path, impl: str) -> None:
    """Machine-readable results for teachers and CI: one record per exercise."""
    records = [
        {
            "name": ex.name,
            "stage": ex.stage,
            "module": ex.module,
            "status": ex.status,
            "section": ex.section,
            "message": ex.message,
            "tests": ex.outcomes,
        }
        for ex in exercises.values()
    ]
    payload = {"impl": impl, "exercises": records}
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2), encoding="utf-8")
    tmp.replace(path)
