"""A module analysed whole: its functions read, their calls followed, the draft's changes settled.

After every top-level function is read (`gateway.migrate.analysis`), the
functions are settled together:

- a helper that receives the session from another function is read again
  with that parameter as its session;
- a function becomes `async def` when it is an endpoint, awaits something, or
  calls a function that became async (which it then awaits);
- `time.sleep` in a function that becomes async becomes `asyncio.sleep`;
  every other blocking call, and every call to a sync function of the app's
  own that blocks or uses a session, stays, with a `# MIGRATE:` note;
- calls into the app's other modules are followed there (a few levels deep)
  and reported at the call with what they do.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import libcst as cst

from gateway.migrate import rewrites
from gateway.migrate.analysis import Reader, Target
from gateway.migrate.facts import Call, Found, FunctionFacts, ModuleFacts
from gateway.migrate.idioms import Idiom, one_line
from gateway.migrate.names import Imports, dotted, imported_names, used_names
from gateway.migrate.orm import is_mapped
from gateway.migrate.reader import NO_AWAIT_HERE
from gateway.migrate.signatures import (
    mapped_parameters,
    provided_sessions,
    session_dependencies,
    session_parameters,
)
from gateway.migrate.sources import Source, is_app_code, shown_path, source_of

ROUNDS = 3  # re-readings while sessions propagate into helpers
DEPTH = 3  # calls into other modules followed this deep
TwinOf = Callable[[str, str], str | None]


@dataclass
class Context:
    """What one run of the analysis shares: the app's root, and the modules read so far."""

    root: Path
    twin_of: TwinOf
    analysed: dict[Path, ModuleFacts]

    def path(self, facts: ModuleFacts) -> str:
        return shown_path(facts.source.path, self.root)


def new_context(root: Path, twin_of: TwinOf | None = None) -> Context:
    return Context(root.resolve(), twin_of or (lambda module, name: None), {})


def analyse(
    source: Source, context: Context, endpoints: dict[str, Any] | None = None, depth: int = 0
) -> ModuleFacts:
    """Every top-level function of `source`; `endpoints` maps the endpoints to their schema."""
    known = context.analysed.get(source.path)
    if known is not None and endpoints is None:
        return known
    targets = _targets(source, endpoints or {}, context.twin_of)
    names = imported_names(source.tree), used_names(source.tree)
    facts = _read(source, targets, *names)
    for _ in range(ROUNDS):
        if not _propagated(facts, targets):
            break
        facts = _read(source, targets, *names)
    context.analysed[source.path] = facts
    _settle(facts, targets, context, depth)
    return facts


def _targets(source: Source, endpoints: dict[str, Any], twin_of: TwinOf) -> dict[str, Target]:
    targets = {}
    for name in source.functions:
        function = source.value(name)
        targets[name] = Target(
            endpoint=name in endpoints,
            response_model=endpoints.get(name),
            sessions=session_parameters(function) if callable(function) else set(),
            session_dependencies=session_dependencies(function) if callable(function) else {},
            mapped=mapped_parameters(function) if callable(function) else {},
            provided=provided_sessions(function) if callable(function) else set(),
            twin_of=twin_of,
        )
    return targets


def _read(
    source: Source, targets: dict[str, Target], imported: dict[str, tuple[str, str]], used: set[str]
) -> ModuleFacts:
    """One reading of the module; each reading starts with the imports as the module has them."""
    imports = Imports(imported, used)
    facts = ModuleFacts(source, imports)
    source.wrapper.visit(Reader(facts, targets))
    return facts


def _propagated(facts: ModuleFacts, targets: dict[str, Target]) -> bool:
    """Give helpers the sessions their callers pass them; True if any helper got a new one."""
    changed = False
    for function in facts.functions.values():
        for call in function.local_calls:
            callee = facts.source.functions.get(call.callee)
            names = [param.name.value for param in callee.params.params] if callee else []
            for argument in call.sessions:
                name = (
                    names[argument]
                    if isinstance(argument, int) and argument < len(names)
                    else argument
                )
                target = targets.get(call.callee)
                if target is not None and isinstance(name, str) and name not in target.sessions:
                    target.sessions.add(name)
                    changed = True
    return changed


def _settle(facts: ModuleFacts, targets: dict[str, Target], context: Context, depth: int) -> None:
    functions = facts.functions
    facts.asynchronous = _asynchronous(functions)
    for name, function in functions.items():
        asynchronous = name in facts.asynchronous
        if asynchronous:
            _sleeps_awaited(facts, function)
            _sessions_async(facts, function, targets[name].provided)
        for call in function.local_calls:
            _local_call(facts, function, call, asynchronous)
        for call in function.app_calls:
            _app_call(facts, function, call, context, depth, asynchronous)
    for name, function in functions.items():
        for found in sorted(function.found, key=lambda f: _place(facts, f)):
            # A sync helper's blocking calls are noted where an async function calls it.
            quiet = found.kind == "blocking" and name not in facts.asynchronous
            if not found.automatic and not quiet:
                facts.note(found.statement or function.node, found.why)


def _asynchronous(functions: dict[str, FunctionFacts]) -> set[str]:
    """Endpoints, functions that await, and functions that call (and so await) those."""
    found = {name for name, function in functions.items() if function.endpoint or function.awaits}
    grown = True
    while grown:
        grown = False
        for name, function in functions.items():
            calls = function.local_calls
            if name not in found and any(c.callee in found and not c.in_sync_scope for c in calls):
                found.add(name)
                grown = True
    return found


def _sleeps_awaited(facts: ModuleFacts, function: FunctionFacts) -> None:
    for found, node in function.sleeps:
        found.automatic, found.why = True, ""
        facts.rewrites[node] = rewrites.sleep(facts.imports)
        function.blocks.remove(found)


def _sessions_async(facts: ModuleFacts, function: FunctionFacts, provided_here: set[str]) -> None:
    """Session parameters typed for AsyncSession (`provided_here`: those a dependency gives);
    a lean answer's return type its schema."""
    defaults_before = False
    for param in [*function.node.params.params, *function.node.params.kwonly_params]:
        name = param.name.value
        if name in function.sessions:
            provided = name in provided_here
            typed = rewrites.session_param(facts.imports, provided)
            if provided and param.default is not None and defaults_before:
                facts.rewrites[function.node.params] = rewrites.keyword_only_from(name, typed)
            else:
                facts.rewrites[param] = typed
        defaults_before = defaults_before or param.default is not None
    returns = function.node.returns
    names_model = returns is not None and is_mapped(facts.source.value(dotted(returns.annotation)))
    if function.answers is not None and returns is not None and names_model:
        facts.rewrites[returns] = rewrites.annotation(function.answers)


def _local_call(facts: ModuleFacts, caller: FunctionFacts, call: Call, asynchronous: bool) -> None:
    callee = facts.functions.get(call.callee)
    if callee is None or callee.node.asynchronous is not None:
        return  # an `async def` already: its calls are awaited as they are
    code = facts.source.code(call.node)
    if call.callee in facts.asynchronous:
        if call.in_sync_scope:
            why = f"{call.callee}() is async in the draft, and {NO_AWAIT_HERE}"
            caller.found.append(Found("helper", call.node, code, False, call.statement, why=why))
            return
        facts.rewrites[call.node] = rewrites.awaited()
        caller.found.append(Found("helper", call.node, code, True, call.statement))
        return
    reached = list(blocking_reached(facts, callee))
    if asynchronous and reached:
        caller.found.append(_blocking_helper(facts, call, callee.name, reached))


def blocking_reached(
    facts: ModuleFacts, function: FunctionFacts, seen: set[str] | None = None
) -> Iterator[str]:
    """`what (path:line)` for each blocking call `function` makes, itself or through helpers."""
    seen = seen if seen is not None else set()
    if function.name in seen:
        return
    seen.add(function.name)
    for found in function.blocks:
        yield f"{one_line(found.code, 48)} at {facts.source.path.name}:{facts.line(found.node)}"
    for call in function.local_calls:
        callee = facts.functions.get(call.callee)
        if callee is not None and call.callee not in facts.asynchronous:
            yield from blocking_reached(facts, callee, seen)


def _blocking_helper(facts: ModuleFacts, call: Call, name: str, reached: list[str]) -> Found:
    form = f"an async {name}(), awaited; or `await run_in_threadpool({name}, ...)`"
    why = (
        f"{name}() blocks ({'; '.join(reached[:2])}): give it an async version, or run it "
        f"with `await run_in_threadpool({name}, ...)` (fastapi.concurrency)"
    )
    code = facts.source.code(call.node)
    return Found("helper", call.node, code, False, call.statement, form=form, why=why)


def _app_call(
    facts: ModuleFacts,
    caller: FunctionFacts,
    call: Call,
    context: Context,
    depth: int,
    asynchronous: bool,
) -> None:
    function = _imported_function(call.callee)
    source = source_of(function) if function is not None else None
    if source is None or depth >= DEPTH or not is_app_code(source.path, context.root):
        return
    helper = analyse(source, context, depth=depth + 1)
    callee = helper.functions.get(function.__name__) if function is not None else None
    if callee is None:
        return
    where = f"{context.path(helper)}:{helper.line(callee.node)}"
    caller.followed.append((helper, callee.name))
    reached = list(blocking_reached(helper, callee))
    uses_session = bool(callee.sessions) and any(
        f.kind in ("query", "session", "lean") for f in callee.found
    )
    if not asynchronous or not (reached or uses_session):
        return
    does = f"blocks ({'; '.join(reached[:2])})" if reached else "uses the sync session"
    why = f"{call.callee} ({where}) {does}: give it an async version and await it"
    code, form = facts.source.code(call.node), f"an async {function.__name__}(), awaited"
    caller.found.append(Found("helper", call.node, code, False, call.statement, form=form, why=why))


def _imported_function(qualified: str) -> Any:
    """The function `package.module.function` names, if its module is loaded or loadable."""
    module_name, _, name = qualified.rpartition(".")
    module = sys.modules.get(module_name)
    if module is None and module_name:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            return None
    function = getattr(module, name, None)
    return function if callable(function) and hasattr(function, "__code__") else None


def idioms(
    facts: ModuleFacts, name: str, context: Context, seen: set[str] | None = None
) -> list[Idiom]:
    """The idioms of function `name`, then those of the module's helpers it calls."""
    seen = seen if seen is not None else set()
    function = facts.functions.get(name)
    if function is None or name in seen:
        return []
    seen.add(name)
    path = context.path(facts)
    found = sorted(function.found, key=lambda f: _place(facts, f))
    listed = [_idiom(facts, f, path) for f in found]
    for callee in [*function.dependencies, *(call.callee for call in function.local_calls)]:
        listed.extend(_via(facts, callee, context, seen))
    for helper, callee in function.followed:
        listed.extend(_via(helper, callee, context, set()))
    return listed


def _via(facts: ModuleFacts, name: str, context: Context, seen: set[str]) -> list[Idiom]:
    """The idioms of helper `name` of `facts`, each saying which helper it is in."""
    helper = facts.functions.get(name)
    if helper is None:
        return []
    where = f"{name} ({context.path(facts)}:{facts.line(helper.node)})"
    return [
        Idiom(**{**idiom.as_dict(), "via": idiom.via or where})
        for idiom in idioms(facts, name, context, seen)
    ]


def _place(facts: ModuleFacts, found: Found) -> tuple[int, int, int]:
    """Where `found` is: line, column, and the inner of two nested expressions first."""
    node = found.node.name if isinstance(found.node, cst.FunctionDef) else found.node
    return facts.line(node), facts.source.column(node), len(found.code)


def _idiom(facts: ModuleFacts, found: Found, path: str) -> Idiom:
    form = found.form
    rewrite = facts.rewrites.get(found.node)
    if not form and rewrite is not None:
        form = facts.source.code(rewrite(found.node))
    return Idiom(
        found.kind, path, facts.line(found.node), one_line(found.code), one_line(form),
        found.automatic, found.why,
    )  # fmt: skip
