"""The tracker's own configuration."""

import os


def database_url() -> str:
    return os.environ.get("TRACKER_DATABASE_URL", "postgresql+psycopg://localhost/tracker")
