"""The demo's settings: the gateway's, with the demo's defaults."""

from __future__ import annotations

from pydantic import Field

from gateway import Settings
from gateway.errors import ErrorFormat


class DemoSettings(Settings):
    """The gateway's settings with the demo's defaults: an embedded database, the error envelope."""

    embedded_database: bool = True
    error_format: ErrorFormat = "envelope"
    map_database_errors: bool = True
    shadow_redact_fields: list[str] = Field(default_factory=lambda: ["email"])
    seed_demo_data: bool = Field(
        default=True, description="seed demo data into a new embedded database"
    )
