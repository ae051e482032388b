"""The command line at its edges: every mistake answered in one line, without a traceback."""

from __future__ import annotations

import subprocess

import pytest

from tests.processes import REPO_ROOT, child_env, free_port, gateway_command

pytestmark = [pytest.mark.slow]

COMMAND_SECONDS = 60.0


def gateway(*arguments: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        gateway_command(*arguments),
        env=child_env({"GATEWAY_LOG_LEVEL": "ERROR", **env}),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=COMMAND_SECONDS,
        check=False,
    )


def one_line(result: subprocess.CompletedProcess[str], code: int) -> str:
    assert result.returncode == code, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("variable", "value", "said"),
    [
        (
            "GATEWAY_ADMIN_TOKENS",
            "{not json",
            "invalid settings: GATEWAY_ADMIN_TOKENS: not valid JSON",
        ),
        (
            "GATEWAY_DATABASE_URL",
            "postgresql://user@db:port/name",
            "invalid settings: GATEWAY_DATABASE_URL: is not a valid URL: "
            "postgresql://user:pass@host:port/db",
        ),
    ],
)
def test_a_setting_that_cannot_be_parsed_is_named_in_one_line(
    variable: str, value: str, said: str
) -> None:
    assert one_line(gateway("db", "check", **{variable: value}), 2) == said


def test_an_unreachable_gateway_is_one_line() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    said = one_line(gateway("routes", "list", "--url", url), 1)
    assert said.startswith(f"cannot reach the gateway at {url}: ")


@pytest.mark.parametrize(
    ("arguments", "said"),
    [
        (("canary",), "a canary needs a percent (0 to 100) of requests for async"),
        (("legacy", "--percent", "30"), "percent applies to canary only, not to legacy"),
        (("async", "--primary", "async"), "primary applies to shadow only, not to async"),
        (("fastest",), "mode: Input should be 'legacy', 'async', 'canary' or 'shadow'"),
    ],
)
def test_a_mode_change_that_makes_no_sense_is_refused_in_one_line(
    arguments: tuple[str, ...], said: str
) -> None:
    result = gateway("routes", "set", "GET /users/{user_id}", *arguments, "--url", "http://x")
    assert one_line(result, 2) == said


def test_a_lower_case_method_names_the_route(committed_database: str) -> None:
    result = gateway(
        "routes", "set", "get /users/{user_id}", "async", GATEWAY_DATABASE_URL=committed_database
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "GET /users/{user_id}: async"
