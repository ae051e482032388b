"""The metrics layer: what every request, thread, pool and route costs, and what to move next.

    registry         every Prometheus metric (its docstring lists them) and their label caches
    middleware       the pure ASGI middleware that times each API request
    instrumentation  hooks on the engines and pools: database time, pool waits, loop lag,
                     blocking calls on the event loop
    exposition       GET /metrics, one worker or several
    advisor          from two readings of the metrics: which route to migrate next, and why

Request metrics are labelled from the scope: the route template FastAPI matched
(`scope["route"]`) and the implementation the routing layer chose
(`scope[SCOPE_IMPL]`). The database layer reports its timings through
`gateway.database.timing`; this layer reads them.
"""
