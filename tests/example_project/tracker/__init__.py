"""A ticket tracker: an app written before the gateway, adopted by it in `tracker.adopted`."""
