"""Legacy routes: `def` endpoints with a sync Session, written the classic way.

They run in FastAPI's threadpool. Each module has the same name, function
names and schemas as its twin in `async_routes`, so the two can be diffed.
"""
