"""The targets the gateway is held to, judged on one run's medians: PASS, MISS, not measured."""

from __future__ import annotations

from dataclasses import dataclass

from bench.results import Summary

Summaries = dict[tuple[str, int], Summary]


@dataclass(frozen=True)
class Verdict:
    target: str
    connections: int
    measured: str
    passed: bool | None

    @property
    def label(self) -> str:
        return {True: "PASS", False: "MISS", None: "not measured"}[self.passed]


def usable(summary: Summary | None) -> bool:
    return summary is not None and summary.rps is not None and not summary.failed


def pair(summaries: Summaries, top: str, bottom: str, level: int) -> tuple[Summary, Summary] | None:
    upper, lower = summaries.get((top, level)), summaries.get((bottom, level))
    if upper is None or lower is None or not usable(upper) or not usable(lower):
        return None
    return upper, lower


def ratio_target(
    summaries: Summaries,
    target: str,
    top: str,
    bottom: str,
    level: int,
    minimum: float,
    clean: bool = False,
) -> Verdict:
    """`top`'s req/s over `bottom`'s at `level` must reach `minimum` (and, if `clean`, 0 errors)."""
    found = pair(summaries, top, bottom, level)
    if found is None or found[0].rps is None or not found[1].rps:
        return Verdict(target, level, "-", None)
    upper, lower = found
    ratio = upper.rps / lower.rps  # type: ignore[operator]
    errors = (upper.errors or 0) + (lower.errors or 0)
    measured = f"{ratio:.2f}x ({upper.rps:,.0f} / {lower.rps:,.0f} req/s)"
    if clean:
        measured += f", {errors:.0f} errors"
    return Verdict(target, level, measured, ratio >= minimum and (not clean or errors == 0))


def p99_target(
    summaries: Summaries, target: str, top: str, bottom: str, level: int, maximum: float
) -> Verdict:
    """`top`'s p99 must stay within `maximum` times `bottom`'s at `level`."""
    found = pair(summaries, top, bottom, level)
    if found is None:
        return Verdict(target, level, "-", None)
    upper, lower = found
    if upper.p99_ms is None or not lower.p99_ms:
        return Verdict(target, level, "no latency measured", False)
    ratio = upper.p99_ms / lower.p99_ms
    measured = f"{ratio:.2f}x ({upper.p99_ms:,.1f} / {lower.p99_ms:,.1f} ms)"
    return Verdict(target, level, measured, ratio <= maximum)


def never_stuck(summaries: Summaries, config: str, level: int) -> Verdict:
    target = f"{config}: no deadlock, 0 errors"
    summary = summaries.get((config, level))
    if not usable(summary):
        return Verdict(target, level, "-", None)
    assert summary is not None
    stuck = summary.served_nothing or not summary.rps
    measured = f"{summary.rps or 0:,.0f} req/s, {summary.errors or 0:.0f} errors"
    return Verdict(target, level, measured, not stuck and summary.errors == 0)


def all_answered(summaries: Summaries, config: str, level: int) -> Verdict:
    target = f"{config}: every connection answered, <= 1 % of answers after 2 s"
    summary = summaries.get((config, level))
    if not usable(summary):
        return Verdict(target, level, "-", None)
    assert summary is not None
    share = summary.slow_share
    measured = f"{summary.unanswered or 0:.0f} unanswered, " + (
        "no timed answers" if share is None else f"{share:.2%} after 2 s"
    )
    passed = share is not None and summary.unanswered == 0 and share <= 0.01
    return Verdict(target, level, measured, passed)


def none_unanswered(summaries: Summaries, config: str, level: int) -> Verdict:
    target = f"{config}: every connection answered"
    summary = summaries.get((config, level))
    if not usable(summary):
        return Verdict(target, level, "-", None)
    assert summary is not None
    measured = f"{summary.unanswered or 0:.0f} unanswered"
    return Verdict(target, level, measured, not summary.served_nothing and summary.unanswered == 0)


# workload, lowest async / legacy ratio, whether it must also be free of errors
ROUTER_RATIOS = (
    ("mixed", 2.5, True),
    ("list", 2.5, False),
    ("patch", 2.0, False),
    ("post", 2.0, False),
)


def router_ratio(
    summaries: Summaries, workload: str, minimum: float, clean: bool, level: int
) -> Verdict:
    target = f"router async >= {minimum}x router legacy, {workload}"
    return ratio_target(
        summaries,
        target + (", 0 errors" if clean else ""),
        f"router_async_{workload}",
        f"router_legacy_{workload}",
        level,
        minimum,
        clean=clean,
    )


def router_targets(summaries: Summaries, levels: list[int]) -> list[Verdict]:
    """The whole users router: async over legacy per workload, and the mixed load fully answered."""
    ratios = [
        router_ratio(summaries, workload, minimum, clean, level)
        for workload, minimum, clean in ROUTER_RATIOS
        for level in levels
    ]
    answered = [
        none_unanswered(summaries, f"router_{impl}_mixed", max(levels))
        for impl in ("legacy", "async")
    ]
    return ratios + answered


def judge(summaries: Summaries, levels: list[int]) -> list[Verdict]:
    """Every target, at the connection counts it names (lowest and highest of this run)."""
    low, high = min(levels), max(levels)
    verdicts = [
        never_stuck(summaries, "gateway_legacy", high),
        *(
            ratio_target(
                summaries,
                "gateway legacy >= 95 % of the classic sync app",
                "gateway_legacy",
                "classic_sync",
                level,
                0.95,
            )
            for level in levels
        ),
        *(
            ratio_target(
                summaries,
                "gateway async >= 2.3x gateway legacy, 0 errors",
                "gateway_async",
                "gateway_legacy",
                level,
                2.3,
                clean=True,
            )
            for level in levels
        ),
        *(
            ratio_target(
                summaries,
                "gateway async >= 45 % of Starlette + raw asyncpg",
                "gateway_async",
                "starlette_asyncpg",
                level,
                0.45,
            )
            for level in levels
        ),
        p99_target(
            summaries,
            "gateway async p99 <= 4x the Starlette + asyncpg p99",
            "gateway_async",
            "starlette_asyncpg",
            low,
            4.0,
        ),
        all_answered(summaries, "gateway_legacy", high),
        all_answered(summaries, "gateway_async", high),
        ratio_target(
            summaries,
            "slow database: async >= 2.3x legacy, 0 errors",
            "slow_async",
            "slow_legacy",
            high,
            2.3,
            clean=True,
        ),
        *(
            ratio_target(
                summaries,
                "gateway's own cost <= 5 % (gateway async / bare endpoint)",
                "gateway_async",
                "gateway_endpoint_bare",
                level,
                0.95,
            )
            for level in levels
        ),
        *(
            p99_target(
                summaries,
                "isolation: async p99 under legacy saturation <= 2x alone",
                "gateway_async_under_load",
                "gateway_async",
                level,
                2.0,
            )
            for level in levels
        ),
        *(
            p99_target(
                summaries,
                "shadow: primary p99 <= 1.1x plain legacy",
                "gateway_shadow",
                "gateway_legacy",
                level,
                1.1,
            )
            for level in levels
        ),
        *(
            ratio_target(
                summaries,
                "2 workers >= 1.5x 1 worker (async)",
                "serve_async_2",
                "serve_async_1",
                level,
                1.5,
            )
            for level in levels
        ),
        *router_targets(summaries, levels),
    ]
    return verdicts
