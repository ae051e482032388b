"""The tracker's API, version 1."""
