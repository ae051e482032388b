"""Statements the draft writes itself, laid out as the project's formatter would.

A statement longer than the line length gets its outermost call's arguments
on an indented line of their own, or one per line with a trailing comma when
they do not fit on one: what ruff and black write. When the project
configures ruff, the lines the draft changed are then laid out by it
(`ruff format --range`) and its imports sorted by its rules; the rest of a
draft keeps the layout the legacy module had.
"""

from __future__ import annotations

import difflib
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path

import libcst as cst

STEP = 4  # spaces per indentation level


def wrapped(statement: cst.BaseStatement, indent: int, width: int) -> cst.BaseStatement:
    """`statement`, its outermost call's arguments wrapped when the line is too long."""
    if not isinstance(statement, cst.SimpleStatementLine):
        return statement
    code = cst.Module([statement]).code.rstrip("\n")
    call = _outermost_call(statement)
    if call is None or "\n" in code or indent + len(code) <= width:
        return statement
    arguments = cst.Module([]).code_for_node(call.with_changes(func=cst.Name("f")))[2:-1]
    laid = _on_one_line(call) if indent + STEP + len(arguments) <= width else _one_per_line(call)
    replaced = statement.deep_replace(call, laid)
    return replaced if isinstance(replaced, cst.SimpleStatementLine) else statement


def _outermost_call(statement: cst.SimpleStatementLine) -> cst.Call | None:
    if len(statement.body) != 1:
        return None
    small = statement.body[0]
    value = getattr(small, "value", None)
    if isinstance(value, cst.Await):
        value = value.expression
    return value if isinstance(value, cst.Call) and value.args else None


def leading(statement: cst.CSTNode) -> Sequence[cst.EmptyLine]:
    """The blank and comment lines above a statement (none for anything else)."""
    if isinstance(statement, cst.SimpleStatementLine | cst.BaseCompoundStatement):
        return statement.leading_lines
    return ()


def comments_of(statements: Sequence[cst.BaseStatement]) -> list[cst.EmptyLine]:
    """The comments of statements a draft replaces (the first one's own lines aside), kept."""
    kept: list[cst.EmptyLine] = []
    for index, statement in enumerate(statements):
        if index:
            kept.extend(line for line in leading(statement) if line.comment is not None)
        trailing = getattr(statement, "trailing_whitespace", None)
        if trailing is not None and trailing.comment is not None:
            kept.append(cst.EmptyLine(indent=True, comment=trailing.comment))
    return kept


def _newline(extra: int) -> cst.ParenthesizedWhitespace:
    return cst.ParenthesizedWhitespace(
        first_line=cst.TrailingWhitespace(),
        empty_lines=[],
        indent=True,
        last_line=cst.SimpleWhitespace(" " * extra),
    )


def _on_one_line(call: cst.Call) -> cst.Call:
    args = list(call.args)
    args[-1] = args[-1].with_changes(
        comma=cst.MaybeSentinel.DEFAULT, whitespace_after_arg=_newline(0)
    )
    return call.with_changes(whitespace_before_args=_newline(STEP), args=args)


def _one_per_line(call: cst.Call) -> cst.Call:
    args = []
    for index, arg in enumerate(call.args):
        last = index == len(call.args) - 1
        comma = cst.Comma(whitespace_after=_newline(0 if last else STEP))
        args.append(arg.with_changes(comma=comma, whitespace_after_arg=cst.SimpleWhitespace("")))
    return call.with_changes(whitespace_before_args=_newline(STEP), args=args)


def ruff_for(path: Path) -> list[str] | None:
    """The command of the ruff that formats `path`'s project, if the project configures ruff."""
    configured = False
    for folder in path.resolve().parents:
        pyproject = folder / "pyproject.toml"
        configured = (folder / "ruff.toml").is_file() or (folder / ".ruff.toml").is_file()
        if pyproject.is_file() and not configured:
            configured = "ruff" in tomllib.loads(pyproject.read_text()).get("tool", {})
        if configured or pyproject.is_file():
            break  # the project's own configuration, or none
    if not configured:
        return None
    beside = Path(sys.executable).parent / "ruff"
    found = str(beside) if beside.is_file() else shutil.which("ruff")
    return [found] if found else None


def changed_ranges(legacy: str, draft: str) -> list[tuple[int, int]]:
    """The draft's line ranges (1-based, inclusive) that differ from the legacy code."""
    matcher = difflib.SequenceMatcher(None, legacy.splitlines(), draft.splitlines(), autojunk=False)
    return [
        (start + 1, max(start + 1, end))
        for tag, _, _, start, end in matcher.get_opcodes()
        if tag in ("replace", "insert")
    ]


def formatted(legacy: str, draft: str, path: Path) -> str:
    """`draft` with the lines it changed laid out by the project's ruff, when it has one."""
    command = ruff_for(path)
    if command is None:
        return draft
    for start, end in reversed(changed_ranges(legacy, draft)):
        draft = _ruff(command, ["format", f"--range={start}-{end + 1}"], draft, path)
    return _ruff(command, ["check", "--select", "I001", "--fix", "--exit-zero"], draft, path)


def _ruff(command: list[str], arguments: list[str], code: str, path: Path) -> str:
    """`code` as ruff leaves it (`code` itself if ruff fails)."""
    result = subprocess.run(
        [*command, *arguments, "--quiet", "--stdin-filename", str(path), "-"],
        input=code, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    return result.stdout if result.returncode == 0 and result.stdout else code
