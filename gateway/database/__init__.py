"""The database layer: both drivers, per-request sessions, admission gates and query helpers.

    engines     one URL -> a psycopg engine and an asyncpg engine (`Database`)
    sessions    `SyncDB` / `AsyncDB`: sessions whose whole life is the endpoint call
    gates       admission to threads and connections: overload becomes quick 503s
    queries     async helpers for each idiom of the translation table
    lean        Core statements compiled once per shape, run straight on asyncpg
    reads       lean reads into a response schema: a row by key, a page with its total
    writes      lean INSERT / UPDATE / DELETE ... RETURNING into a response schema
    extensions  PostgreSQL extensions a route needs (`require_extension`)
    timing      where the layer reports database and thread time (read by metrics)
    state       what the lifespan builds and every request reads

This layer knows nothing of routing or metrics: it reports timings through
`timing` and leaves their recording to whoever reads them.
"""
