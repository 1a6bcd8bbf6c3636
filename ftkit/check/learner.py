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
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from ftkit.check.statements import (
    Clock,
    Statement,
    blocked_definitions,
    is_definition,
    run_statements,
)

SUFFIXES = (".py", ".ipynb")
PREFIX = "ftkit_learner_"


class LoadError(Exception):
    """A learner's notebook cell or script statement failed while loading."""


@dataclass
class Loaded:
    """What `load` made of a learner's path: the module name to check and what it skipped."""

    name: str
    path: Path
    skipped: list[str] = field(default_factory=list)  # "file:line: statement — why"
    executed: bool = False
    ran: list[str] = field(default_factory=list)  # computed values kept: "file:line: statement"
    blocked: dict[str, str] = field(
        default_factory=dict
    )  # name -> "needs `x` from ..., skipped: ..."
    workdir: Path | None = None  # the temporary copy of the learner's folder the code runs in


def is_path(impl: str) -> bool:
    """`--impl` names a file or folder (not an importable module like `exercises`)."""
    return impl.endswith(SUFFIXES) or "/" in impl or "\\" in impl or impl.startswith(".")


def load(impl: str, *, execute: bool = False) -> Loaded:
    """Load `impl` (a .py file, .ipynb notebook or folder) into `sys.modules`; return its name.

    The code runs in a temporary copy of the learner's folder (`working_copy`), which is
    also the working folder while it loads: relative paths to their data files work, and
    nothing is written to their folder. Tracebacks and reports name the learner's files.
    """
    path = Path(impl).expanduser().resolve()
    if not path.exists():
        raise FileNotFoundError(f"--impl {impl!r}: no such file or folder")
    if path.is_file() and path.suffix not in SUFFIXES:
        raise ValueError(f"--impl {impl!r}: give a .py file, an .ipynb notebook or a folder")
    folder = path if path.is_dir() else path.parent
    if path.is_dir() and (path / "__init__.py").exists():
        if str(path.parent) not in sys.path:  # a package: imported as usual
            sys.path.insert(0, str(path.parent))
        importlib.import_module(path.name)
        return Loaded(path.name, path)
    from ftkit.check.impl import reference_modules

    reference_modules()  # torch and the kit's modules first, outside any learner's time budget
    copy = working_copy(folder)
    finder = _on_path(copy, folder)
    name = PREFIX + re.sub(r"\W", "_", path.stem if path.is_file() else path.name)
    previous = os.getcwd()
    os.chdir(copy)
    try:
        if path.is_file():
            stem = path.stem
            code_name = stem if stem.isidentifier() and stem not in sys.modules else name + "_code"
            code, skipped = _load_file(
                copy / path.name, code_name, execute=execute, finder=finder, original=path
            )
            module = _flat(name, path, [code])
        else:
            module, skipped = _load_folder(copy, name, finder)
    finally:
        os.chdir(previous)
    sys.modules[name] = module
    blocked = {k: v for f in finder.blocked.values() for k, v in f.items()}
    blocked.update(module.__ftkit_shadowed__)
    ran = [line for lines in finder.ran.values() for line in lines]
    return Loaded(name, path, skipped, execute and path.is_file(), ran, blocked, copy)


# Not copied into the working copy; files above LINK_ABOVE_BYTES are linked, not copied.
IGNORED_FOLDERS = {"__pycache__", ".ipynb_checkpoints", "venv", "node_modules", "wandb"}
LINK_ABOVE_BYTES = 2_000_000
COPY_DEPTH, COPY_FILES = 3, 3000


def working_copy(folder: Path) -> Path:
    """A temporary copy of a learner's folder (a few levels deep; big files linked, not copied)."""
    root = Path(tempfile.mkdtemp(prefix="ftkit-learner-"))
    copy = root / folder.name
    copy.mkdir()
    count = 0
    for dirpath, dirnames, filenames in os.walk(folder):
        here = Path(dirpath)
        rel = here.relative_to(folder)
        keep = len(rel.parts) < COPY_DEPTH
        dirnames[:] = [
            d for d in sorted(dirnames) if keep and d not in IGNORED_FOLDERS and d[0] != "."
        ]
        (copy / rel).mkdir(exist_ok=True)
        for file in sorted(filenames):
            count += 1
            if count > COPY_FILES:
                return copy
            source, target = here / file, copy / rel / file
            try:
                if source.stat().st_size > LINK_ABOVE_BYTES:
                    target.symlink_to(source)
                else:
                    shutil.copy2(source, target)
            except OSError:
                continue  # unreadable: the learner's code will say so if it needs it
    return copy


# --- which statements are definitions ------------------------------------------------------


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


def _sources(path: Path, original: Path | None = None) -> list[tuple[str, str]]:
    """`(filename, source)` pieces of a script (one) or notebook (one per code cell), named
    after the learner's own file (`original`) when `path` is its working copy."""
    shown = original or path
    if path.suffix == ".py":
        source = path.read_text(encoding="utf-8")
        _register_source(str(shown), source)
        return [(str(shown), source)]
    pieces = []
    for number, source in enumerate(notebook_cells(path), start=1):
        filename = cell_filename(shown, number)
        _register_source(filename, source)
        if source.lstrip().startswith("%%"):  # a cell magic (%%time, %%bash): not Python
            pieces.append((filename, ""))
            continue
        pieces.append((filename, _without_magics(source)))
    return pieces


def _new_module(name: str, path: Path) -> ModuleType:
    module = ModuleType(name, f"A learner's {path.name}")
    module.__file__ = str(path)
    return module


def _load_file(
    path: Path,
    name: str,
    *,
    execute: bool = False,
    module: ModuleType | None = None,
    finder: LearnerFinder | None = None,
    original: Path | None = None,
) -> tuple[ModuleType, list[str]]:
    """Run a script's or notebook's statements its definitions need (or, `execute`, all its
    cells) in a (fresh) module (`ftkit.check.statements`)."""
    module = module or _new_module(name, path)
    sys.modules[name] = module  # dataclasses and pickling look their module up
    pieces = [(f, ast.parse(src, filename=f), src) for f, src in _sources(path, original)]
    if execute:  # everything runs: every top-level name is the learner's
        if path.suffix == ".ipynb":
            run_notebook(path, module)
        defined: set[str] = set()
        for filename, tree, _ in pieces:
            defined |= defined_names(tree)
            if path.suffix == ".py":
                exec(compile(tree, filename, "exec"), module.__dict__)  # noqa: S102
            _mark_classes(tree, filename, module)
        module.__ftkit_defined__ = defined
        return module, []
    statements = []
    for filename, tree, source in pieces:
        lines = source.splitlines()
        for stmt in tree.body:
            text = lines[stmt.lineno - 1].strip() if stmt.lineno <= len(lines) else ""
            statements.append(Statement(stmt, filename, text))
    finder = finder or LearnerFinder(path.parent, path.parent)
    all_source = "\n".join(src for _, _, src in pieces)
    outcome = run_statements(
        statements,
        module.__dict__,
        exports=finder.exports().get(name, set()),
        clock=finder.clock,
        is_local=lambda missing: f"{missing.split('.')[0]}.py" in all_source,
    )
    if outcome.fatal is not None:
        raise outcome.fatal
    for filename, tree, _ in pieces:
        _mark_classes(tree, filename, module)
    module.__ftkit_defined__ = outcome.defined
    finder.ran[name] = outcome.ran
    finder.blocked[name] = blocked_definitions(outcome, module.__dict__)
    return module, outcome.skipped


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
    chapter_six_modules = {"spam_data", "classifier"}
    only_six = {n for n, mods in owners().items() if set(mods) <= chapter_six_modules}
    flat = _new_module(name, path)
    imported: dict[str, object] = {}
    shadowed: dict[str, str] = {}  # a ch. 5 function calling its file's ch. 6 version of a name
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
            if chapter_six and key not in shared:
                calls = (
                    shared
                    & defined
                    & set(getattr(getattr(value, "__code__", None), "co_names", ()))
                )
                if calls and key in owners() and "classifier" not in owners()[key]:
                    shadowed[key] = (
                        f"needs chapter 5's `{sorted(calls)[0]}`: {Path(module.__file__).name} is a "
                        f"chapter 6 file, so its `{sorted(calls)[0]}` is chapter 6's (classification), "
                        f"which shadows chapter 5's for the chapter 5 `{key}` it also defines"
                    )
    for key, value in imported.items():
        if not hasattr(flat, key):
            setattr(flat, key, value)
    flat.__ftkit_shadowed__ = shadowed
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


class LearnerFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Import a learner folder's own scripts, notebooks and sub-packages the way `load` runs
    them (statement by statement, downloads and training skipped), from its working copy."""

    def __init__(self, folder: Path, original: Path):
        self.folder, self.original = folder, original
        self.clock = Clock()
        self.ran: dict[str, list[str]] = {}
        self.skipped: dict[str, list[str]] = {}
        self.blocked: dict[str, dict[str, str]] = {}
        self._exports: dict[str, set[str]] | None = None

    def file_of(self, fullname: str) -> tuple[Path, bool] | None:
        """The file of module `fullname` in the folder, and whether it is a package."""
        base = self.folder.joinpath(*fullname.split("."))
        if (base / "__init__.py").is_file():
            return base / "__init__.py", True
        for suffix in SUFFIXES:
            candidate = base.with_name(base.name + suffix)
            if candidate.is_file():
                return candidate, False
        if "." in fullname and base.is_dir():  # a namespace sub-package (no __init__.py)
            return base, True
        return None

    def find_spec(self, fullname, path=None, target=None):
        if not fullname.split(".")[0].isidentifier() or fullname.startswith(PREFIX):
            return None
        found = self.file_of(fullname)
        if found is None:
            return None
        file, package = found
        if file.is_dir():
            spec = importlib.util.spec_from_loader(fullname, self, is_package=True)
            spec.submodule_search_locations = [str(file)]
            return spec
        locations = [str(file.parent)] if package else None
        return importlib.util.spec_from_file_location(
            fullname, file, loader=self, submodule_search_locations=locations
        )

    def create_module(self, spec):
        return None

    def exec_module(self, module: ModuleType) -> None:
        origin = module.__spec__.origin
        if not origin or not Path(origin).is_file():
            return  # a namespace sub-package: nothing to run
        path = Path(origin)
        original = self.original / path.relative_to(self.folder)
        _, self.skipped[module.__name__] = _load_file(
            path, module.__name__, module=module, finder=self, original=original
        )

    def exports(self) -> dict[str, set[str]]:
        """Module name -> the names the folder's files import from it (they need those values)."""
        if self._exports is None:
            self._exports = {}
            for file in sorted(self.folder.rglob("*")):
                if file.suffix in SUFFIXES and file.is_file():
                    self._scan_imports(file)
        return self._exports

    def _scan_imports(self, file: Path) -> None:
        package = list(file.relative_to(self.folder).parent.parts)
        try:
            sources = [src for _, src in _sources(file)]
            trees = [ast.parse(src) for src in sources]
        except (SyntaxError, ValueError, UnicodeDecodeError):
            return
        for tree in trees:
            aliases: dict[str, str] = {}
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom):
                    base = package[: len(package) - node.level + 1] if node.level else []
                    module = ".".join([*base, *([node.module] if node.module else [])])
                    self._exports.setdefault(module, set()).update(a.name for a in node.names)
                elif isinstance(node, ast.Import):
                    for alias in node.names:
                        aliases[alias.asname or alias.name] = alias.name
            for node in ast.walk(tree):
                if (
                    isinstance(node, ast.Attribute)
                    and isinstance(node.value, ast.Name)
                    and node.value.id in aliases
                ):
                    self._exports.setdefault(aliases[node.value.id], set()).add(node.attr)


_FINDERS: dict[Path, LearnerFinder] = {}


def _on_path(folder: Path, original: Path) -> LearnerFinder:
    """The folder importable, its scripts run as `load` runs them (Jupyter's working folder)."""
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    if folder not in _FINDERS:
        _FINDERS[folder] = LearnerFinder(folder, original)
        sys.meta_path.insert(0, _FINDERS[folder])
    return _FINDERS[folder]


def _import_each(names: list[str], finder: LearnerFinder) -> tuple[list[ModuleType], list[str]]:
    """The folder's modules, and a line for each file that cannot be compiled: a scratch file
    with a SyntaxError is left out (a file importing it fails that import, listed), the
    folder's other files are checked. Exit status 2 only when no file compiles."""
    modules, broken, first = [], [], None
    for module_name in names:
        try:
            modules.append(importlib.import_module(module_name))
        except SyntaxError as err:
            first = first or err
            path = Path(err.filename or module_name)
            if path.is_relative_to(finder.folder):  # the working copy's: name the learner's
                path = finder.original / path.relative_to(finder.folder)
            where = (
                path.relative_to(finder.original.parent)
                if path.is_relative_to(finder.original)
                else path
            )
            broken.append(
                f"{where}:{err.lineno}: the whole file — cannot be compiled ({type(err).__name__}:"
                f" {err.msg}); the folder's other files are checked without it"
            )
    if first is not None and not modules:
        raise first
    return modules, broken


def _load_folder(folder: Path, name: str, finder: LearnerFinder) -> tuple[ModuleType, list[str]]:
    """One flat module from every script, notebook and sub-package module of a folder (see the
    module docstring): the folder's own files first, then its sub-packages'."""
    files = sorted(p for p in folder.iterdir() if p.suffix in SUFFIXES and p.is_file())
    names = [p.stem for p in files if p.stem.isidentifier()]
    for init in sorted(folder.glob("*/__init__.py")):
        package = init.parent.name
        if not package.isidentifier():
            continue
        names += [
            f"{package}.{p.stem}"
            for p in sorted(init.parent.iterdir())
            if p.suffix == ".py" and p.stem.isidentifier() and p.stem != "__init__"
        ]
    modules, broken = _import_each(names, finder)
    skipped = broken + [line for m in modules for line in finder.skipped.get(m.__name__, [])]
    for path in files:  # `chapter-6-code.ipynb`: no file imports it, but it is the learner's
        if path.stem.isidentifier():
            continue
        code_name = name + "_" + re.sub(r"\W", "_", path.stem)
        module, left_out = _load_file(
            path, code_name, finder=finder, original=finder.original / path.name
        )
        modules.insert(0, module)
        skipped += left_out
    return _flat(name, finder.original, modules), skipped
