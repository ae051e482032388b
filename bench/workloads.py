"""The router scenario's workloads: router.lua's arguments and the rows its list filters match."""

from __future__ import annotations

from dataclasses import dataclass

from shared_models.seed import user_row

WRITTEN_PREFIX = "bench-"  # the emails of every user a benchmark run creates
# Matches seeded emails (user1@, user10@ .. user19@, user100@ ..), which PATCH never changes.
SEARCH_TEXT = "user1"


def rows_matching(text: str, users: int) -> int:
    """Seeded users whose email contains `text`, ignoring case: rows a `q=text` page can show."""
    needle = text.lower()
    return sum(1 for n in range(1, users + 1) if needle in str(user_row(n)["email"]).lower())


def active_rows(users: int) -> int:
    """Seeded users an `active=true` page can show."""
    return sum(1 for n in range(1, users + 1) if user_row(n)["is_active"])


def run_nonce(configuration: str, connections: int, round_number: int, started: float) -> str:
    """A tag unique to one run; POSTed emails carry it, so no two runs insert the same email."""
    return f"{configuration}-c{connections}-r{round_number}-{round(started * 1000)}"


@dataclass(frozen=True)
class Workload:
    """One router.lua workload (mixed, get, list, patch or post) of one run."""

    name: str
    nonce: str

    def arguments(self, warmup: int, users: int) -> list[str]:
        """router.lua's arguments: workload, warm-up s, users, nonce, search text, row counts."""
        return [
            self.name,
            str(warmup),
            str(users),
            self.nonce,
            SEARCH_TEXT,
            str(rows_matching(SEARCH_TEXT, users)),
            str(active_rows(users)),
        ]


COLUMNS = "id, email, name, is_active, created_at"
PAGE = 20


def searched(text: str) -> str:
    found = f"'%' || '{text}' || '%' ESCAPE '/'"
    return f"(name ILIKE {found} OR email ILIKE {found})"


def page_script(where: str, rows: int) -> str:
    """A page of 20 with its total in one statement, as the lean path sends it."""
    condition = f" WHERE {where}" if where else ""
    return (
        f"\\set offset random(0, {max(0, rows - PAGE)})\n"
        f"SELECT {COLUMNS}, (SELECT count(*) FROM users{condition}) AS total "
        f"FROM users{condition} ORDER BY id LIMIT {PAGE} OFFSET :offset;\n"
    )


def pgbench_scripts(workload: str, users: int) -> list[tuple[str, int]]:
    """(pgbench script, weight) for each statement `workload` makes the lean path send."""
    get = f"\\set id random(1, {users})\nSELECT {COLUMNS} FROM users WHERE id = :id;\n"
    pages = [
        (page_script("", users), 15),
        (page_script("is_active = true", active_rows(users)), 10),
        (page_script(searched(SEARCH_TEXT), rows_matching(SEARCH_TEXT, users)), 5),
    ]
    patch = (
        f"\\set id random(1, {users})\n\\set n random(1, 1000000)\n"
        f"UPDATE users SET name = 'Bench ' || :n WHERE id = :id RETURNING {COLUMNS};\n"
    )
    email = f"'{WRITTEN_PREFIX}pgbench-' || :client_id || '-' || :n || '@example.com'"
    post = (
        "\\set n random(1, 1000000000000000)\n"
        f"INSERT INTO users (email, name, is_active) VALUES ({email}, 'Bench', true) "
        f"RETURNING {COLUMNS};\n"
    )
    scripts = {
        "mixed": [(get, 40), *pages, (patch, 20), (post, 10)],
        "get": [(get, 1)],
        "list": pages,
        "patch": [(patch, 1)],
        "post": [(post, 1)],
    }
    return scripts[workload]
