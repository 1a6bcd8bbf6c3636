"""Run a learner's module statement by statement, as it runs, minus downloads and training.

A learner's notebook or script computes values its definitions use (`tokenizer =
tiktoken.get_encoding("gpt2")`, `BASE_CONFIG.update(...)`, `device = torch.device(...)`)
between downloads and training loops. `run_statements` keeps, in order:

- every definition (imports, `def`, `class`, call-free assignments);
- every other statement that computes or changes a value a definition (or a sibling
  importing this module) needs, unless it downloads, trains, writes or waits (decided on
  the syntax tree: `risk`), or needs a value already skipped;

each under a small time budget, with the network off and its printing swallowed. A
statement that fails, runs past the budget or is not needed is skipped and listed; the
names it would have set are *blocked* with the reason, so a definition using one is
reported as blocked, not as wrong.
"""

from __future__ import annotations

import ast
import contextlib
import io
import signal
import socket
import symtable
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

# Seconds one statement may run, and all of one load together.
STATEMENT_BUDGET_S = 5.0
LOAD_BUDGET_S = 30.0

_DEFINITIONS = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
_DYNAMIC = (ast.Call, ast.Await, ast.Yield, ast.YieldFrom, ast.NamedExpr)
_DYNAMIC += (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)

# Calls that download, train, write, wait or show: never run while loading.
_NETWORK_MODULES = {"requests", "urllib", "httpx", "wget", "subprocess", "ollama", "openai"}
_DOWNLOAD = ("download", "urlretrieve", "urlopen", "from_pretrained", "load_dataset", "query_model")
_TRAIN = ("train", "fit", "backward", "generate_model_scores")
_WRITE_OR_WAIT = {
    "save": "writes a file",
    "savefig": "writes a file",
    "save_pretrained": "writes a file",
    "to_csv": "writes a file",
    "dump": "writes a file",
    "write_text": "writes a file",
    "show": "shows a plot",
    "input": "waits for input",
    "sleep": "waits",
    "system": "runs a command",
    "step": "trains (an optimizer step)",
}


def is_definition(stmt: ast.stmt) -> bool:
    """Imports, def/class, docstrings, assignments of call-free values, try-blocks of those."""
    if isinstance(stmt, (*_DEFINITIONS, ast.Pass)):
        return True
    if isinstance(stmt, ast.Expr):
        return isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str)
    if isinstance(stmt, ast.Assign | ast.AnnAssign):
        value = stmt.value
        return value is None or not any(isinstance(n, _DYNAMIC) for n in ast.walk(value))
    if isinstance(stmt, ast.Try):  # `try: import tiktoken` / `except ImportError: ...`
        bodies = [stmt.body, stmt.orelse, stmt.finalbody, *(h.body for h in stmt.handlers)]
        return all(is_definition(s) for body in bodies for s in body)
    return False


def _base_name(node: ast.expr) -> str | None:
    while isinstance(node, ast.Attribute | ast.Subscript | ast.Call):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def stored(stmt: ast.stmt) -> set[str]:
    """Module-level names a statement binds (assignment targets, def/class, imports, for)."""
    if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return {stmt.name}
    if isinstance(stmt, ast.Import | ast.ImportFrom):
        return {(a.asname or a.name).split(".")[0] for a in stmt.names if a.name != "*"}
    names = set()
    for node in ast.walk(stmt):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda):
            continue
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
    return names


def changed(stmt: ast.stmt) -> set[str]:
    """Names a statement changes in place: `cfg.update(...)`, `cfg["k"] = v`, `x += 1`."""
    names = set()
    if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call):
        func = stmt.value.func
        if isinstance(func, ast.Attribute):
            names.add(_base_name(func.value))
    targets = []
    if isinstance(stmt, ast.Assign):
        targets = stmt.targets
    elif isinstance(stmt, ast.AugAssign | ast.AnnAssign):
        targets = [stmt.target]
    for target in targets:
        if isinstance(target, ast.Attribute | ast.Subscript):
            names.add(_base_name(target))
        elif isinstance(target, ast.Name) and isinstance(stmt, ast.AugAssign):
            names.add(target.id)
    return {n for n in names if n}


def loaded_names(node: ast.AST) -> set[str]:
    """Names a piece of code reads (for a function: its globals, approximately)."""
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def global_names(node: ast.stmt) -> set[str]:
    """Names a def/class reads from its module (its free globals, by Python's own symbol table)."""
    try:
        table = symtable.symtable(ast.unparse(node), "<learner>", "exec")
    except (SyntaxError, ValueError):
        return loaded_names(node)
    found: set[str] = set()
    stack = list(table.get_children())
    for symbol in table.get_symbols():  # decorators, default values, base classes
        if symbol.is_referenced():
            found.add(symbol.get_name())
    while stack:
        child = stack.pop()
        stack.extend(child.get_children())
        for symbol in child.get_symbols():
            if symbol.is_global() and symbol.is_referenced():
                found.add(symbol.get_name())
    return found


def _reads(node: ast.stmt) -> set[str]:
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return global_names(node)
    return loaded_names(node)


def _call_name(call: ast.Call) -> tuple[str | None, str]:
    func = call.func
    if isinstance(func, ast.Attribute):
        return _base_name(func.value), func.attr
    if isinstance(func, ast.Name):
        return None, func.id
    return None, ""


def risk(stmt: ast.stmt) -> str | None:
    """Why a statement must not run while loading (downloads, trains, writes, waits), or None."""
    calls = [_call_name(node) for node in ast.walk(stmt) if isinstance(node, ast.Call)]
    for _, name in calls:
        if any(word in name.lower() for word in _DOWNLOAD):
            return f"downloads ({name})"
    for node in ast.walk(stmt):
        if not isinstance(node, ast.Call):
            continue
        base, name = _call_name(node)
        low = name.lower()
        if base in _NETWORK_MODULES:
            return f"uses the network or a command ({base}.{name})"
        if any(word in low for word in _DOWNLOAD):
            return f"downloads ({name})"
        if any(low.startswith(word) or f"_{word}" in low for word in _TRAIN):
            return f"trains ({name})"
        if name in _WRITE_OR_WAIT:
            return f"{_WRITE_OR_WAIT[name]} ({name})"
        if name == "open" and any(
            isinstance(a, ast.Constant) and isinstance(a.value, str) and set(a.value) & set("wax")
            for a in [*node.args[1:2], *(k.value for k in node.keywords if k.arg == "mode")]
        ):
            return "writes a file (open)"
    return None


@dataclass
class Statement:
    """One top-level statement of a learner's file (a notebook cell's statement keeps its cell)."""

    node: ast.stmt
    filename: str  # the learner's file, or `nb.ipynb (cell N)`
    text: str  # its first line

    @property
    def where(self) -> str:
        return f"{self.filename}:{self.node.lineno}"


@dataclass
class Outcome:
    """What running one module's statements did."""

    ran: list[str] = field(default_factory=list)  # "file:line: text" of computed values kept
    skipped: list[str] = field(default_factory=list)  # "file:line: text — why"
    blocked: dict[str, str] = field(default_factory=dict)  # value name -> "needs ... because ..."
    defined: set[str] = field(default_factory=set)  # names the module itself defines
    uses: dict[str, set[str]] = field(default_factory=dict)  # definition -> names it reads
    fatal: BaseException | None = None  # a missing package: the load stops (exit 2)


def needed_statements(statements: list[Statement], exports: set[str]) -> set[int]:
    """Indexes of the non-definition statements a definition (or an importer) needs."""
    needed = set(exports)
    if "*" in needed:  # `from module import *`: everything it binds
        needed |= {name for st in statements for name in stored(st.node)}
    for st in statements:
        if is_definition(st.node) and not isinstance(st.node, ast.Import | ast.ImportFrom):
            needed |= _reads(st.node)
    variables = set()
    for st in statements:
        if not isinstance(st.node, (*_DEFINITIONS, ast.Pass)):
            variables |= stored(st.node)
    keep: set[int] = set()
    for index in range(len(statements) - 1, -1, -1):
        node = statements[index].node
        if is_definition(node):
            continue
        if (stored(node) | (changed(node) & variables)) & needed:
            keep.add(index)
            needed |= loaded_names(node)
    return keep


class _OverBudget(BaseException):
    """A statement ran past its time (a BaseException: a learner's `except` cannot swallow it)."""


@contextlib.contextmanager
def _budget(seconds: float | None) -> Iterator[None]:
    if seconds is None:
        yield
        return
    if seconds <= 0:
        raise _OverBudget
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGALRM"):
        yield
        return

    def handler(signum, frame):
        raise _OverBudget

    previous = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _no_network(*args, **kwargs):
    raise ConnectionRefusedError("ftkit: no network while loading a learner's code")


def _local_encoding(original):
    """`tiktoken.get_encoding("gpt2")` from the kit's local files (same encoding, no download)."""

    def get_encoding(name: str):
        if name == "gpt2":
            from ftkit.io.tokenizer import get_tokenizer

            return get_tokenizer()
        return original(name)

    return get_encoding


@contextlib.contextmanager
def offline() -> Iterator[None]:
    """The network off (sockets refuse to connect) while a learner's statements run; GPT-2's
    tokenizer (`tiktoken.get_encoding("gpt2")`) comes from the kit's local files."""
    try:
        import tiktoken
    except ImportError:
        tiktoken = None
    if tiktoken is not None:
        get_encoding = tiktoken.get_encoding
        tiktoken.get_encoding = _local_encoding(get_encoding)
    saved = socket.socket.connect, socket.create_connection, socket.getaddrinfo
    socket.socket.connect = _no_network  # type: ignore[method-assign]
    socket.create_connection = _no_network  # type: ignore[assignment]
    socket.getaddrinfo = _no_network  # type: ignore[assignment]
    try:
        yield
    finally:
        socket.socket.connect, socket.create_connection, socket.getaddrinfo = saved
        if tiktoken is not None:
            tiktoken.get_encoding = get_encoding


class Clock:
    """The time left of one load (shared by a folder's files)."""

    def __init__(self, total: float = LOAD_BUDGET_S):
        self.deadline = time.monotonic() + total

    def left(self) -> float:
        return min(STATEMENT_BUDGET_S, self.deadline - time.monotonic())


def _why(err: BaseException) -> str:
    if isinstance(err, _OverBudget):
        return f"ran past the loading budget ({STATEMENT_BUDGET_S:g} s)"
    text = str(err).splitlines()[0][:100] if str(err) else ""
    return f"failed: {type(err).__name__}: {text}" if text else f"failed: {type(err).__name__}"


def _short(where: str) -> str:
    """`ch06.ipynb cell 41` / `train.py:12` for a message (no folder)."""
    name = where.rsplit("/", 1)[-1]
    if " (cell " in name:
        file, rest = name.split(" (cell ", 1)
        return f"{file} cell {rest.split(')')[0]}"
    return name


def run_statements(
    statements: list[Statement],
    namespace: dict,
    *,
    exports: set[str] = frozenset(),
    clock: Clock | None = None,
    is_local=lambda name: False,
) -> Outcome:
    """Run the statements a learner's definitions need into `namespace` (see the docstring)."""
    clock = clock or Clock()
    out = Outcome()
    keep = needed_statements(statements, set(exports))
    for index, st in enumerate(statements):
        node = st.node
        definition = is_definition(node)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            out.uses[node.name] = global_names(node)
        if not definition and index not in keep:
            out.skipped.append(f"{st.where}: {st.text[:70]}")
            continue
        names = stored(node) | (changed(node) if not definition else set())
        why = None if definition else risk(node)
        missing = sorted((loaded_names(node) & set(out.blocked)) - stored(node))
        if why is None and missing and not definition:
            why = f"needs `{missing[0]}`, {out.blocked[missing[0]]}"
        if why is None:
            try:
                code = compile(ast.Module(body=[node], type_ignores=[]), st.filename, "exec")
                # Imports and definitions run unbudgeted: an import cut short leaves a package
                # (torch) half-initialised for the rest of the run.
                limit = None if definition else clock.left()
                if "get_encoding" in st.text:  # build GPT-2's tokenizer outside the budget
                    from ftkit.io.tokenizer import get_tokenizer

                    get_tokenizer()
                with (
                    _budget(limit),
                    offline(),
                    contextlib.redirect_stdout(io.StringIO()),
                    contextlib.redirect_stderr(io.StringIO()),
                ):
                    exec(code, namespace)  # noqa: S102 - the learner's own code, as it runs
            except ModuleNotFoundError as err:
                if not is_local(err.name or ""):
                    out.fatal = err
                    return out
                why = _why(err)
            except KeyboardInterrupt:
                raise
            except BaseException as err:  # noqa: BLE001 - SystemExit in a learner's script too
                why = _why(err)
            else:
                if not definition:
                    out.ran.append(f"{st.where}: {st.text[:70]}")
                for name in stored(node):
                    out.blocked.pop(name, None)
                if not isinstance(node, ast.Import | ast.ImportFrom):
                    out.defined |= stored(node)
                continue
        out.skipped.append(f"{st.where}: {st.text[:70]} — {why}")
        if not why.startswith("needs "):
            why = f"from {_short(st.where)}, skipped: {why}"
        for name in names - set(namespace):  # a value it would only have changed stays
            out.blocked.setdefault(name, why)
    return out


def blocked_definitions(outcome: Outcome, namespace: dict) -> dict[str, str]:
    """Definition -> "needs `x` from nb.ipynb cell 4, skipped: trains (...)" for each def/class
    reading a value that was skipped (and is not bound)."""
    found = {}
    for name, reads in outcome.uses.items():
        for value in sorted(reads & set(outcome.blocked)):
            if value not in namespace:
                reason = outcome.blocked[value]
                found[name] = reason if reason.startswith("needs ") else f"needs `{value}` {reason}"
                break
    return found
