"""ftkit: the kit's command line, recipes and test tooling (building blocks live in `reference/`)."""
