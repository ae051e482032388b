"""The metrics layer: what every request, thread, pool and route costs, and what to move next.

    registry         every Prometheus metric (its docstring lists them) and their label caches
    middleware       the pure ASGI middleware that times each API request
    instrumentation  hooks on the engines and pools: database time, pool waits, loop lag,
                     blocking calls on the event loop
    exposition       GET /metrics, one worker or several
    advisor          from two readings of the metrics: which route to migrate next, and why
    history          each worker's recent readings, for the console's figures and charts
    fleet_figures    the same figures for the whole fleet, from Prometheus

Every metric names a route by its key, `route="GET /users/{user_id}"`. Request
metrics take it, and the implementation the routing layer chose, from the
scope (`scope[SCOPE_ROUTE]`, `scope[SCOPE_IMPL]`), where the routing layer puts
them when it hands the request to an implementation. The database layer reports its timings through
`gateway.database.timing`; this layer reads them.
"""
