"""Your implementation: the same modules as `reference/`, with the learner's parts as stubs.

Each stub raises NotImplementedError with a hint and the book section. Fill one
in, then run `ftkit check` (or `pytest --impl exercises`) to see it turn solved.
"""
