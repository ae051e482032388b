"""What the tricky legacy endpoints call in another module of theirs: an audit trail over HTTP."""

from __future__ import annotations

from urllib.request import urlopen

AUDIT_URL = "http://audit.invalid/events"


def audit(event: str) -> None:
    urlopen(AUDIT_URL, data=event.encode(), timeout=2).close()
