"""The tracker's routes migrated to async, a router at a time; their twins are in `tracker.api`."""
