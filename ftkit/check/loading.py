"""Import an implementation once, before any test, and say clearly why it cannot be imported.

A learner's module with a SyntaxError, a missing dependency or an exception at import
would otherwise fail every test that asks for it (thousands of lines, no table); a
misspelled `--impl` likewise. `import_problem` returns one block — file, line, the
error — that the plugin prints before stopping the run with exit status 2.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
import sys
import traceback
from pathlib import Path

from ftkit.check.impl import reference_modules

KIT_ROOT = Path(__file__).resolve().parents[2]


def import_problem(package: str) -> str | None:
    """None when `package` and its book-named modules import; else one block saying why not."""
    try:
        root = importlib.import_module(package)
    except BaseException as err:  # noqa: BLE001 - SystemExit/KeyboardInterrupt in learner code too
        if isinstance(err, KeyboardInterrupt):
            raise
        return describe(package, package, err)
    if not hasattr(root, "__path__"):
        return None  # a flat adapter module: nothing more to import
    for short in reference_modules():
        name = f"{package}.{short}"
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name == name:
                continue  # the package does not have this module: its names are not provided
            return describe(package, name, err)
        except BaseException as err:  # noqa: BLE001
            if isinstance(err, KeyboardInterrupt):
                raise
            return describe(package, name, err)
    return None


def load_problem(impl: str, *, execute: bool = False) -> tuple[object | None, str | None]:
    """Load a learner's script, notebook or folder (`ftkit.check.learner`): (Loaded, None) or
    (None, one block saying why not)."""
    from ftkit.check.learner import LoadError, load

    try:
        return load(impl, execute=execute), None
    except (FileNotFoundError, ValueError) as err:
        if str(err).startswith("--impl"):  # no such path, or not a .py/.ipynb/folder
            return None, f"ftkit: {err}\nFix the path, then run the check again (no test ran)."
        return None, describe(impl, impl, err)
    except LoadError as err:
        cause = err.__cause__ or err
        lines = [f"ftkit: running your notebook --impl {impl!r} failed", f"  {err}"]
        where = _location(cause)
        if where and where[2]:
            lines.insert(2, f"    {where[2].strip()}")
        lines.append("Fix this cell (or check its definitions only, without --execute).")
        return None, "\n".join(lines)
    except BaseException as err:  # noqa: BLE001 - SystemExit/KeyboardInterrupt in learner code too
        if isinstance(err, KeyboardInterrupt):
            raise
        return None, describe(impl, impl, err)


def describe(package: str, module: str, err: BaseException) -> str:
    """The block for one import failure: where (file:line), the error, and what to do."""
    if (
        isinstance(err, ModuleNotFoundError)
        and err.name
        and f"{module}.".startswith(f"{err.name}.")
    ):
        return _not_found(package)
    where = _location(err)
    lines = [f"ftkit: cannot import your implementation --impl {package!r} ({module})"]
    if where:
        path, line, text = where
        lines.append(f"  {path}:{line}")
        if text:
            lines.append(f"    {text.strip()}")
    lines.append(f"  {type(err).__name__}: {_message(err)}")
    lines.append("Fix this error, then run the check again (no test ran).")
    return "\n".join(lines)


def _message(err: BaseException) -> str:
    if isinstance(err, SyntaxError):
        return err.msg or str(err)
    return str(err) or repr(err)


def _location(err: BaseException) -> tuple[str, int, str] | None:
    """The learner's file and line the error comes from (the innermost frame outside the kit)."""
    if isinstance(err, SyntaxError) and err.filename:
        return err.filename, err.lineno or 0, err.text or ""
    frames = [
        frame
        for frame in traceback.extract_tb(err.__traceback__)
        if not frame.filename.startswith("<")
        and "importlib" not in frame.filename
        and not _is_kit_file(frame.filename)
    ]
    if not frames:
        return None
    frame = frames[-1]
    return frame.filename, frame.lineno or 0, frame.line or ""


def _is_kit_file(filename: str) -> bool:
    try:
        Path(filename).resolve().relative_to(KIT_ROOT / "ftkit")
    except ValueError:
        return False
    return True


def _not_found(package: str) -> str:
    """A misspelled or unreachable `--impl`: name the close matches and the search path."""
    top = package.split(".")[0]
    known = ["exercises", "reference"] + sorted(
        info.name for info in pkgutil.iter_modules() if not info.name.startswith("_")
    )
    close = difflib.get_close_matches(top, list(dict.fromkeys(known)), n=3, cutoff=0.75)
    lines = [f"ftkit: --impl {package!r}: no module of that name can be imported."]
    if close:
        lines.append(f"  Did you mean: {', '.join(close)}?")
    lines.append(
        "  Give 'exercises', 'reference', or a package/module on the Python path "
        "(run from the folder holding it, or set PYTHONPATH)."
    )
    searched = [
        p for p in dict.fromkeys(sys.path) if p and "python3" not in p and "site-packages" not in p
    ]
    lines.append(f"  searched: {', '.join(searched)} and the installed packages")
    return "\n".join(lines)
