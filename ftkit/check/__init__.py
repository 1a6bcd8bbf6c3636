"""The checker: look up the book's names in an implementation, run tests/book on it, report.

`impl` resolves names (`Impl`, exercise keys), `loading` imports an implementation once
and explains a failure, `markers` reads and regenerates the tests' `stage`/`exercise`
markers, `plugin` is the pytest plugin, `progress` the table and reports, `run` the
`ftkit check` runner.
"""
