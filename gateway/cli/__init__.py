"""The `gateway` command line."""

from gateway.cli.commands import main

__all__ = ["main"]
