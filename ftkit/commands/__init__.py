"""Subcommands of `ftkit`, one module each."""
