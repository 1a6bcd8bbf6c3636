"""Load a learner's script, notebook or folder as a flat module of the book's names.

`--impl ch07.ipynb`, `--impl my_ch06.py` or `--impl ./my_code/`: learners write the
book's chapters as scripts and notebooks that download data and train when run. By
default only the *definitions* are loaded — imports, `def`, `class`, docstrings and
module-level assignments without calls (`GPT_CONFIG_124M = {...}`); everything else
(downloads, training loops, prints) is skipped, decided on the syntax tree (`ast`), and
listed in the report. `execute=True` runs a notebook top to bottom instead, cell by
cell in this process (IPython, so magics work), and keeps whatever it defined.

The book's names need no adapter. Ch. 5 and ch. 6 both define `calc_loss_batch`,
`calc_loss_loader` and `evaluate_model`: a file that defines a name only ch. 6 has
(`SpamDataset`, `calc_accuracy_loader`, `classify_review`, ...) is a ch. 6 file, so its
own definitions of those three count as ch. 6's (`calc_loss_batch_classifier`, as a flat
adapter names them); any other file's count as ch. 5's. A folder without `__init__.py`
is the union of its `.py` and `.ipynb` files (definitions win over imports, the first
file in name order wins a name two files define); its files import each other as
definitions only too (`from previous_chapters import GPTModel`), and the folder is on
the path as Jupyter's working folder would be.
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import importlib.abc
import importlib.util
import json
import linecache
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

SUFFIXES = (".py", ".ipynb")
PREFIX = "ftkit_learner_"


class LoadError(Exception):
    """A learner's notebook cell or script statement failed while loading."""


@dataclass
class Loaded:
    """What `load` made of a learner's path: the module name to check and what it skipped."""

    name: str
    path: Path
    skipped: list[str] = field(default_factory=list)  # "file:line: statement", definitions only
    executed: bool = False


def is_path(impl: str) -> bool:
    """`--impl` names a file or folder (not an importable module like `exercises`)."""
    return impl.endswith(SUFFIXES) or "/" in impl or "\\" in impl or impl.startswith(".")


def load(impl: str, *, execute: bool = False) -> Loaded:
    """Load `impl` (a .py file, .ipynb notebook or folder) into `sys.modules`; return its name."""
    path = Path(impl).expanduser().resolve()
    if not path.exists():
        raise FileNotFoundError(f"--impl {impl!r}: no such file or folder")
    folder = path if path.is_dir() else path.parent
    _on_path(folder)
    if path.is_dir() and (path / "__init__.py").exists():
        _on_path(path.parent)  # a package: imported as usual
        importlib.import_module(path.name)
        return Loaded(path.name, path)
    name = PREFIX + re.sub(r"\W", "_", path.stem if path.is_file() else path.name)
    if path.is_file():
        if path.suffix not in SUFFIXES:
            raise ValueError(f"--impl {impl!r}: give a .py file, an .ipynb notebook or a folder")
        stem = path.stem
        code_name = stem if stem.isidentifier() and stem not in sys.modules else name + "_code"
        code, skipped = _load_file(path, code_name, execute=execute)
        module = _flat(name, path, [code])
    else:
        module, skipped = _load_folder(path, name)
    sys.modules[name] = module
    return Loaded(name, path, skipped, executed=execute and path.is_file())


# --- which statements are definitions ------------------------------------------------------

_DEFINITIONS = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
_DYNAMIC = (ast.Call, ast.Await, ast.Yield, ast.YieldFrom, ast.NamedExpr)
_DYNAMIC += (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)


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


def definitions_only(tree: ast.Module) -> tuple[ast.Module, list[ast.stmt]]:
    """The module with only its definitions, and the statements left out."""
    kept = [s for s in tree.body if is_definition(s)]
    skipped = [s for s in tree.body if not is_definition(s)]
    return ast.Module(body=kept, type_ignores=[]), skipped


def defined_names(tree: ast.Module) -> set[str]:
    """Names a module's kept statements define itself (def/class/assignment, not imports)."""
    names: set[str] = set()
    for stmt in tree.body:
        if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(stmt.name)
        elif isinstance(stmt, ast.Assign):
            names.update(t.id for t in stmt.targets if isinstance(t, ast.Name))
        elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
            names.add(stmt.target.id)
    return names


# --- scripts and notebooks -----------------------------------------------------------------


def notebook_cells(path: Path) -> list[str]:
    """The source of each code cell of an .ipynb file (nbformat 4 JSON)."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    cells = nb.get("cells")
    if cells is None:  # nbformat 3: cells inside worksheets
        cells = [c for ws in nb.get("worksheets", []) for c in ws.get("cells", [])]
    sources = []
    for cell in cells:
        if cell.get("cell_type") != "code":
            continue
        source = cell.get("source", cell.get("input", ""))
        sources.append("".join(source) if isinstance(source, list) else str(source))
    return sources


def cell_filename(path: Path, number: int) -> str:
    """The name a notebook cell's code carries in tracebacks and `inspect`: `nb.ipynb (cell 3)`."""
    return f"{path} (cell {number})"


def _register_source(filename: str, source: str) -> None:
    """Let `inspect.getsource` and tracebacks show a cell's lines (mtime None: never re-read)."""
    lines = source.splitlines(keepends=True)
    linecache.cache[filename] = (len(source), None, lines, filename)


def _without_magics(source: str) -> str:
    """Comment out IPython lines (`%matplotlib inline`, `!pip install ...`) so `ast` can parse."""
    out = []
    for line in source.splitlines():
        stripped = line.lstrip()
        out.append(f"# {line}" if stripped.startswith(("%", "!")) else line)
    return "\n".join(out)


def _sources(path: Path) -> list[tuple[str, str]]:
    """`(filename, source)` pieces of a script (one) or notebook (one per code cell)."""
    if path.suffix == ".py":
        return [(str(path), path.read_text(encoding="utf-8"))]
    pieces = []
    for number, source in enumerate(notebook_cells(path), start=1):
        filename = cell_filename(path, number)
        _register_source(filename, source)
        if source.lstrip().startswith("%%"):  # a cell magic (%%time, %%bash): not Python
            pieces.append((filename, ""))
            continue
        pieces.append((filename, _without_magics(source)))
    return pieces


def _new_module(name: str, path: Path) -> ModuleType:
    module = ModuleType(name, f"A learner's {path.name}, definitions only")
    module.__file__ = str(path)
    return module


def _load_file(
    path: Path, name: str, *, execute: bool = False, module: ModuleType | None = None
) -> tuple[ModuleType, list[str]]:
    """Execute a script's or notebook's definitions (or all its cells) in a (fresh) module."""
    module = module or _new_module(name, path)
    sys.modules[name] = module  # dataclasses and pickling look their module up
    skipped: list[str] = []
    defined: set[str] = set()
    pieces = [(f, ast.parse(src, filename=f), src) for f, src in _sources(path)]
    if execute and path.suffix == ".ipynb":
        run_notebook(path, module)
    for filename, tree, source in pieces:
        kept, left_out = definitions_only(tree)
        if execute:  # everything ran: every top-level name is the learner's
            defined |= defined_names(tree)
            if path.suffix == ".py":
                exec(compile(tree, filename, "exec"), module.__dict__)  # noqa: S102
            _mark_classes(tree, filename, module)
            continue
        defined |= defined_names(kept)
        lines = source.splitlines()
        for stmt in left_out:
            text = lines[stmt.lineno - 1].strip() if stmt.lineno <= len(lines) else ""
            skipped.append(f"{filename}:{stmt.lineno}: {text[:70]}")
        exec(compile(kept, filename, "exec"), module.__dict__)  # noqa: S102 - the learner's definitions
        _mark_classes(kept, filename, module)
    module.__ftkit_defined__ = defined
    return module, skipped


def _mark_classes(tree: ast.Module, filename: str, module: ModuleType) -> None:
    """Remember where each class was defined (`inspect` cannot find a class in a notebook)."""
    for stmt in tree.body:
        obj = module.__dict__.get(getattr(stmt, "name", ""))
        if isinstance(stmt, ast.ClassDef) and isinstance(obj, type):
            with contextlib.suppress(AttributeError, TypeError):  # a C-level metaclass
                obj.__ftkit_source__ = (filename, stmt.lineno)


def _flat(name: str, path: Path, modules: list[ModuleType]) -> ModuleType:
    """One module exposing the book's names of several learner modules (see the docstring).

    The learner's own code keeps running in its modules (a ch. 6 `calc_loss_loader` still
    calls its own `calc_loss_batch`); only the names the kit looks up are arranged here.
    """
    from ftkit.check.impl import owners

    shared = {n for n, mods in owners().items() if "classifier" in mods and len(mods) > 1}
    only_six = {n for n, mods in owners().items() if mods == ("classifier",)}
    flat = _new_module(name, path)
    imported: dict[str, object] = {}
    for module in modules:
        defined = getattr(module, "__ftkit_defined__", set())
        chapter_six = bool(defined & only_six)
        for key, value in vars(module).items():
            if key.startswith("_"):
                continue
            if key not in defined:
                imported.setdefault(key, value)
                continue
            exposed = f"{key}_classifier" if chapter_six and key in shared else key
            if not hasattr(flat, exposed):
                setattr(flat, exposed, value)  # defined here: the first file wins
    for key, value in imported.items():
        if not hasattr(flat, key):
            setattr(flat, key, value)
    return flat


def run_notebook(path: Path, module: ModuleType) -> None:
    """Run every code cell top to bottom in `module` (IPython: magics work); stop at an error."""
    try:
        from IPython.core.interactiveshell import InteractiveShell
    except ImportError as err:
        raise ImportError(
            "--execute runs notebooks with IPython: pip install 'llm-finetune-kit[notebooks]'"
        ) from err
    shell = InteractiveShell.instance(user_module=module, user_ns=module.__dict__)
    current = {"name": ""}
    # Name each cell's code `nb.ipynb (cell N)`, so failures point at the learner's cell.
    shell.compile.get_code_name = lambda raw, transformed, number: current["name"]
    previous = os.getcwd()
    os.chdir(path.parent)  # as Jupyter runs it: files it reads or writes sit beside it
    try:
        for number, source in enumerate(notebook_cells(path), start=1):
            current["name"] = cell_filename(path, number)
            result = shell.run_cell(source, store_history=False, silent=True)
            error = result.error_before_exec or result.error_in_exec
            if error is not None:
                raise LoadError(
                    f"{current['name']}: {type(error).__name__}: {error}"
                    f" (the notebook ran top to bottom up to cell {number})"
                ) from error
    finally:
        os.chdir(previous)


# --- folders -------------------------------------------------------------------------------


class DefinitionsOnlyFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Import a learner folder's own scripts and notebooks as definitions only."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.skipped: dict[str, list[str]] = {}

    def file_of(self, fullname: str) -> Path | None:
        if "." in fullname:
            return None
        for suffix in SUFFIXES:
            candidate = self.folder / f"{fullname}{suffix}"
            if candidate.is_file():
                return candidate
        return None

    def find_spec(self, fullname, path=None, target=None):
        found = self.file_of(fullname)
        if found is None:
            return None
        return importlib.util.spec_from_file_location(fullname, found, loader=self)

    def create_module(self, spec):
        return None

    def exec_module(self, module: ModuleType) -> None:
        path = Path(module.__spec__.origin)
        _, self.skipped[module.__name__] = _load_file(path, module.__name__, module=module)


_FINDERS: dict[Path, DefinitionsOnlyFinder] = {}


def _on_path(folder: Path) -> DefinitionsOnlyFinder:
    """The folder importable, its scripts as definitions only (as Jupyter's working folder)."""
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    if folder not in _FINDERS:
        _FINDERS[folder] = DefinitionsOnlyFinder(folder)
        sys.meta_path.insert(0, _FINDERS[folder])
    return _FINDERS[folder]


def _load_folder(folder: Path, name: str) -> tuple[ModuleType, list[str]]:
    """One flat module from every script and notebook of a folder (see the module docstring)."""
    finder = _on_path(folder)
    files = sorted(p for p in folder.iterdir() if p.suffix in SUFFIXES and p.stem.isidentifier())
    modules = [importlib.import_module(p.stem) for p in files]
    skipped = [line for m in modules for line in finder.skipped.get(m.__name__, [])]
    return _flat(name, folder, modules), skipped
