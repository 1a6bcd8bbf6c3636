"""How far `reference/` is from the book's package: each function's body beside the book's, `# kit:` lines left out.

`reference/` promises the book's listings, with every line beyond them marked `# kit:`.
This compares each function and method that the book's package (`llms_from_scratch`)
also defines, after dropping the marked statements (a trailing `# kit` comment marks
its statement, a `# kit` comment alone on a line the statement below it, one on a
`def` line the signature) and docstrings, as `ast.unparse` normalises both (so
formatting and comments never count). Run `python -m tests.kit.book_drift` for the
differences as unified diffs.
"""

from __future__ import annotations

import ast
import difflib
import importlib
import inspect
import io
import textwrap
import tokenize
from collections.abc import Iterator
from types import ModuleType

# Which chapters of the book's package hold each reference module's listings, searched in order.
CHAPTERS = {
    "model": ("ch04", "ch03"),
    "generation": ("ch05", "ch04"),
    "training": ("ch05",),
    "weights": ("ch05",),
    "spam_data": ("ch06",),
    "classifier": ("ch06",),
    "instruction_data": ("ch07",),
    "collate": ("ch07",),
    "evaluation": ("ch07", "ch05"),
    "judge": ("ch07",),
    "lora": ("appendix_e",),
}


def kit_lines(source: str) -> tuple[set[int], set[int]]:
    """Lines whose statement is the kit's: (trailing `# kit` comments, `# kit` comments alone)."""
    trailing, alone = set(), set()
    tokens = tokenize.generate_tokens(io.StringIO(source).readline)
    previous_line = 0
    for tok in tokens:
        if tok.type == tokenize.COMMENT and tok.string.lstrip("# ").startswith("kit"):
            (trailing if tok.start[0] == previous_line else alone).add(tok.start[0])
        if tok.type not in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT):
            previous_line = tok.end[0]
    return trailing, alone


def book_statements(source: str, *, drop_kit: bool) -> tuple[list[str], bool]:
    """A function's body as normalised statements (docstring out); with `drop_kit`, marked ones out.

    Returns the statements and whether the signature line is marked `# kit`.
    """
    source = textwrap.dedent(source)
    tree = ast.parse(source)
    func = tree.body[0]
    trailing, alone = kit_lines(source) if drop_kit else (set(), set())
    marked = {line for line in trailing} | {line + 1 for line in alone}
    signature_marked = func.lineno in trailing

    class Drop(ast.NodeTransformer):
        def generic_visit(self, node):
            super().generic_visit(node)
            for name in ("body", "orelse", "finalbody"):
                block = getattr(node, name, None)
                if isinstance(block, list) and block and isinstance(block[0], ast.stmt):
                    kept = [
                        s
                        for s in block
                        if node is func and s is block[0] and _doc(s) or s.lineno not in marked
                    ]
                    kept = [s for s in kept if not (node is func and s is block[0] and _doc(s))]
                    setattr(node, name, kept or [ast.Pass()])
            return node

    Drop().visit(func)
    return [line for s in func.body for line in ast.unparse(s).splitlines()], signature_marked


def _doc(stmt: ast.stmt) -> bool:
    return isinstance(stmt, ast.Expr) and isinstance(getattr(stmt, "value", None), ast.Constant)


def functions(obj: object, prefix: str = "") -> Iterator[tuple[str, object]]:
    """(qualified name, function) for a function, or each method a class defines itself."""
    if inspect.isclass(obj):
        for name, member in vars(obj).items():
            if inspect.isfunction(member):
                yield f"{prefix}{obj.__name__}.{name}", member
    elif inspect.isfunction(obj):
        yield f"{prefix}{obj.__name__}", obj


def book_counterpart(module: str, name: str) -> tuple[str, object] | None:
    """The book package's object of that name in the first of the module's chapters defining it."""
    for chapter in CHAPTERS.get(module, ()):
        book = importlib.import_module(f"llms_from_scratch.{chapter}")
        obj = vars(book).get(name)
        if obj is not None and getattr(obj, "__module__", None) == book.__name__:
            return chapter, obj
    return None


def drift(modules: dict[str, ModuleType]) -> dict[str, str]:
    """Each reference function or method differing from the book's: its unified diff (book -> ours)."""
    found: dict[str, str] = {}
    for short, module in modules.items():
        for name, obj in vars(module).items():
            if getattr(obj, "__module__", None) != module.__name__:
                continue
            match = book_counterpart(short, name)
            if match is None:
                continue
            chapter, book_obj = match
            book_methods = dict(functions(book_obj))
            for qual, ours in functions(obj):
                theirs = book_methods.get(qual)
                if theirs is None:
                    continue
                mine, _ = book_statements(inspect.getsource(ours), drop_kit=True)
                book, _ = book_statements(inspect.getsource(theirs), drop_kit=False)
                if mine != book:
                    diff = difflib.unified_diff(
                        book,
                        mine,
                        f"llms_from_scratch.{chapter}.{qual}",
                        f"reference.{short}.{qual}",
                        lineterm="",
                        n=1,
                    )
                    found[f"{short}.{qual}"] = "\n".join(diff)
    return found


def unmarked_lines(diff: str) -> list[str]:
    """The lines of a drift diff that are ours and not the book's, so not marked `# kit:`.

    A marked statement is left out of the comparison, so a diff whose non-book lines are
    all marked shows only the book's lines they replace (`-`). A block whose statements
    are all marked reads `pass`, which is no line of ours either.
    """
    return [
        line[1:]
        for line in diff.splitlines()
        if line.startswith("+") and not line.startswith("+++") and line[1:].strip() != "pass"
    ]


def reference_modules() -> dict[str, ModuleType]:
    """The reference modules that hold book listings."""
    return {name: importlib.import_module(f"reference.{name}") for name in CHAPTERS}


if __name__ == "__main__":
    for key, diff in drift(reference_modules()).items():
        mark = " (non-book lines not marked `# kit:`)" if unmarked_lines(diff) else ""
        print(f"=== {key}{mark}\n{diff}\n")
