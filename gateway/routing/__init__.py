"""The routing layer: one public route per key, and which implementation serves each request.

A route key is `METHOD /path/template`. A key may have a legacy implementation
(`def`, sync Session), an async one (`async def`, AsyncSession), or both; with
both, they are two implementations of ONE route: the path is matched and
documented once.

    routes        an app's routes as FastAPI builds them (nested routers included),
                  flattened and rebuilt; the one module that relies on FastAPI internals
    keys          route keys, and the shape that pairs twins whatever their parameter names
    contract      the start-up check that twins accept and promise the same thing
    pairing       pairs the two sides, tags each response with X-Gateway-Impl
    modes         legacy | async | canary N % | shadow: a choice made from memory alone
    table         the modes in memory and the per-request dispatch
    targeting     what a request asks of the dispatch, read in one pass over its headers
    stickiness    where each route reads the sticky key of its canary buckets
    forcing       an admin's request served by the implementation it names
    store         the modes in PostgreSQL, with an event per change
    sync          LISTEN/NOTIFY and periodic reloads keep every worker's table current
    shadow        the other implementation runs in the background, read-only, to compare
    compare       how two answers are compared (shadow runs and parity checks)
    field_paths   how comparison rules and learned noise name places in a JSON answer
    noise         per route, the fields that differ between two runs of one implementation
    canary_guard  a canary whose async side does worse goes back to legacy

Invariants: a request never waits on the database to be routed; a shadow never
writes; a mode needing an implementation the route lacks is refused.
"""
