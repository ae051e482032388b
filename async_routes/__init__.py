"""Migrated routes: `async def` endpoints with an AsyncSession, written with the query helpers.

Each module has the same name, function names and schemas as its twin in
`legacy_routes`, so the two can be diffed.
"""
