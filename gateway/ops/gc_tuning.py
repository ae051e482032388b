"""Process-wide tuning applied while the app runs: the garbage collector.

A gateway process holds a few hundred thousand objects that live as long as it
does (modules, routes, schemas, mappers), and every request allocates many
short-lived ones. With Python's default thresholds the collector walks the
long-lived objects again and again; freezing them once the app has started
takes them out of every later collection, and a higher first-generation
threshold runs the cheap collections less often. Both are undone at shutdown.
"""

from __future__ import annotations

import gc
from collections.abc import Callable

from gateway.settings import Settings


def tune_garbage_collector(settings: Settings) -> Callable[[], None]:
    """Apply the settings' collector tuning; the returned function restores what was."""
    previous = gc.get_threshold()
    if settings.gc_threshold:
        gc.set_threshold(settings.gc_threshold, *previous[1:])
    if settings.gc_freeze:
        gc.collect()
        gc.freeze()

    def restore() -> None:
        if settings.gc_freeze:
            gc.unfreeze()
        gc.set_threshold(*previous)

    return restore
