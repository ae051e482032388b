"""The scan as text: per router, each endpoint with its idioms, then the routers ranked.

    app/api/routes/users.py: 5 endpoints (5 with an async twin), 13 idioms, 13 automatic
      GET /users  list_users (app/api/routes/users.py:17)  twin: yes  mode: legacy
        app/api/routes/users.py:18  dependency  db: SyncDB
            -> db: AsyncDB

An idiom left to a person says so (`by hand`) and why; one found in a helper
the endpoint calls names it (`in helper (path:line)`).
"""

from __future__ import annotations

from collections.abc import Iterator

from gateway.migrate.idioms import SNIPPET_WIDTH, Idiom, counted, one_line
from gateway.migrate.scan import EndpointScan, RouterScan, Scan

NO_METRICS = "no metrics: give --url or --prometheus"


def lines(scan: Scan) -> Iterator[str]:
    endpoints = sum(len(router.endpoints) for router in scan.routers)
    modes = "from the database" if scan.modes_known else "unknown (no database answered)"
    yield (
        f"Scan of {scan.app}: {counted(endpoints, 'legacy endpoint')} in "
        f"{counted(len(scan.routers), 'router')}; modes {modes}"
    )
    for router in sorted(scan.routers, key=lambda r: r.path):
        yield ""
        yield from _router(router)
    for unread in scan.unread:
        yield f"not read (no module-level function): {unread}"
    yield ""
    yield from summary(scan)


def _router(router: RouterScan) -> Iterator[str]:
    yield (
        f"{router.path}: {counted(len(router.endpoints), 'endpoint')} ({router.twins} with an "
        f"async twin), {counted(router.idioms, 'idiom')}, {router.automatic} automatic"
    )
    for endpoint in router.endpoints:
        yield from _endpoint(endpoint)


def _endpoint(endpoint: EndpointScan) -> Iterator[str]:
    twin = "yes" if endpoint.twin else "no"
    mode = endpoint.mode or "unknown"
    yield (
        f"  {endpoint.key}  {endpoint.function} ({endpoint.path}:{endpoint.line})  "
        f"twin: {twin}  mode: {mode}"
    )
    if not endpoint.idioms:
        yield "    no sync-only idiom"
    for idiom in endpoint.idioms:
        yield from _idiom(idiom)


def _idiom(idiom: Idiom) -> Iterator[str]:
    kind = idiom.kind if idiom.automatic else f"{idiom.kind}, by hand"
    via = f"  (in {idiom.via})" if idiom.via else ""
    yield f"    {idiom.path}:{idiom.line}  {kind}  {one_line(idiom.code, SNIPPET_WIDTH)}{via}"
    yield f"        -> {one_line(idiom.async_form, SNIPPET_WIDTH)}"
    if idiom.why:
        yield f"        {'why' if not idiom.automatic else 'note'}: {idiom.why}"


def summary(scan: Scan) -> Iterator[str]:
    source = f"advisor from {scan.metrics}" if scan.metrics else f"advisor: {NO_METRICS}"
    yield f"Routers, the most automatic first ({source}):"
    width = max([6, *(len(router.path) for router in scan.routers)])
    yield f"  #  {'router':<{width}}  endpoints  twins  idioms  automatic  advisor"
    for index, router in enumerate(scan.routers, 1):
        share = f"{router.automatic} ({router.share:.0%})"
        advisor = "-"
        if router.advisor_rank is not None:
            advisor = f"#{router.advisor_rank}, {router.threadpool_share or 0:.0%} of threadpool"
        yield (
            f"  {index:<2} {router.path:<{width}}  {len(router.endpoints):>9}  "
            f"{router.twins:>5}  {router.idioms:>6}  {share:<9}  {advisor}"
        )
