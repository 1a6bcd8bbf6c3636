"""ftkit: the kit's command line, recipes and test tooling (building blocks live in `reference/`)."""

from ftkit.layout import enable_imports

enable_imports()  # an installed kit: `reference`/`exercises` from the wheel's copy (ftkit/layout.py)
