"""The two implementations a route can have, named once for every layer."""

from __future__ import annotations

from typing import Literal

Impl = Literal["legacy", "async"]
IMPLS: tuple[Impl, ...] = ("legacy", "async")


def other(impl: Impl) -> Impl:
    """The implementation that is not `impl`."""
    return "async" if impl == "legacy" else "legacy"
