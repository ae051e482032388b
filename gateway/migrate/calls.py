"""The calls of a function, read: Query chains, session calls, blocking calls, the app's own.

A chain on the session's `.query()` (or on a variable holding one) becomes
its `select()` form; a session call that does I/O is awaited, one that
AsyncSession lacks is left with the way to run it; a blocking call is left
with its async form; a call to another function of the app is recorded for
`gateway.migrate.modules` to settle. Parameters are read here too: the sync
session, and dependencies that query it.
"""

from __future__ import annotations

import libcst as cst
from libcst.metadata import QualifiedNameProvider, QualifiedNameSource

from gateway.migrate import chains, rewrites
from gateway.migrate.blocking import blocking
from gateway.migrate.chains import flatten
from gateway.migrate.facts import Call
from gateway.migrate.idioms import Kind
from gateway.migrate.names import dotted
from gateway.migrate.orm import is_mapped
from gateway.migrate.reader import NO_AWAIT_HERE, ReaderBase, State
from gateway.migrate.syntax import dependency_name, session_method
from gateway.migrate.tracking import Held, Loader

AWAITED = frozenset(
    {"commit", "flush", "refresh", "delete", "rollback", "close", "execute", "scalar",
     "scalars", "get", "get_one", "merge", "connection", "stream", "stream_scalars"}
)  # fmt: skip
NO_IO = frozenset(
    {"add", "add_all", "expunge", "expunge_all", "expire", "expire_all", "in_transaction",
     "in_nested_transaction", "is_modified", "get_bind"}
)  # fmt: skip
REPORTED_NO_IO = frozenset({"add", "add_all"})
CONTEXTS = frozenset({"begin", "begin_nested"})


class Calls(ReaderBase):
    """Reads calls, `with` statements and parameters (see the module docstring)."""

    def visit_Call(self, node: cst.Call) -> None:
        state = self.state
        if state is None or node in state.consumed:
            return
        if self._chain(state, node) or self._session_call(state, node):
            return
        self._other_call(state, node)

    def _chain(self, state: State, node: cst.Call) -> bool:
        base, links = flatten(node)
        if not isinstance(base, cst.Name) or not links:
            return False
        read = chains.read_chain(
            base.value, links, state.facts.sessions, state.queries, self.value_of,
            f"the query on line {self.source.line(node)}",
        )  # fmt: skip
        if read is None:
            return False
        chain, end = read
        state.consumed.update(link.call for link in links[: end + 1])
        call = links[end].call
        state.chains[call] = chain
        awaited = chain.run is not None
        automatic = chain.problem is None and not (awaited and state.sync_scopes)
        why = chain.problem or (NO_AWAIT_HERE if awaited and state.sync_scopes else "")
        chain.loader.can_add = automatic  # a load added to a chain left as it is would be lost
        if automatic:
            self.facts.rewrites[call] = rewrites.built(chain, self.facts.imports)
            state.facts.awaits |= awaited
        form = "" if automatic else chains.FORMS.get(chain.run or "", "")
        self._found(state, "query", call, automatic, why=why, form=form)
        return True

    def _session_call(self, state: State, node: cst.Call) -> bool:
        owner = session_method(node, state.facts.sessions)
        if owner is None:
            return False
        session, method = owner
        if method in NO_IO:
            if method in REPORTED_NO_IO:
                self._found(
                    state, "session", node, True, form=self.source.code(node) + "  (no I/O)"
                )
            return True
        if method not in AWAITED:
            why = (
                f"AsyncSession has no {method}(): run it as "
                f"`await {session}.run_sync(lambda session: session.{method}(...))`"
            )
            self._found(state, "session", node, False, why=why)
            return True
        kind: Kind = "commit_in_loop" if method == "commit" and state.loops else "session"
        if state.sync_scopes:
            self._found(state, kind, node, False, why=NO_AWAIT_HERE)
            return True
        loader = self._loader_of_get(node) if method == "get" else None
        self.facts.rewrites[node] = rewrites.awaited(loader)
        state.facts.awaits = True
        why = "each pass commits on its own, as before" if kind == "commit_in_loop" else ""
        self._found(state, kind, node, True, why=why)
        return True

    def _loader_of_get(self, node: cst.Call) -> Loader | None:
        state = self.state
        if state is None or not node.args:
            return None
        model = self.value_of(node.args[0].value)
        if not is_mapped(model):
            return None
        loader = Loader(
            f"the get on line {self.source.line(node)}", model, dotted(node.args[0].value)
        )
        for arg in node.args[2:]:
            if arg.keyword is not None and arg.keyword.value == "options":
                for element in getattr(arg.value, "elements", ()):
                    loader.loaded.update(chains.loaded_paths(element.value)[0])
        state.loaders[node] = loader
        return loader

    def _other_call(self, state: State, node: cst.Call) -> None:
        if not dotted(node.func):
            return  # a method of a call's result: nothing its name can tell
        names = self.get_metadata(QualifiedNameProvider, node.func, set())
        for qualified in sorted(names, key=lambda q: q.name):
            family = blocking(qualified.name)
            if family is not None:
                found = self._found(
                    state, "blocking", node, False, form=family.async_form,
                    why=f"{family.what} blocks the event loop: use {family.async_form}",
                )  # fmt: skip
                state.facts.blocks.append(found)
                if qualified.name == "time.sleep":
                    state.facts.sleeps.append((found, node))
                return
            if (
                qualified.source == QualifiedNameSource.LOCAL
                and qualified.name in self.source.functions
            ):
                state.facts.local_calls.append(self._call(state, qualified.name, node))
                return
            if qualified.source == QualifiedNameSource.IMPORT:
                state.facts.app_calls.append(self._call(state, qualified.name, node))
                return

    def _call(self, state: State, callee: str, node: cst.Call) -> Call:
        sessions: dict[int | str, str] = {}
        for index, arg in enumerate(node.args):
            if isinstance(arg.value, cst.Name) and arg.value.value in state.facts.sessions:
                sessions[arg.keyword.value if arg.keyword else index] = arg.value.value
        return Call(callee, node, state.statement, bool(state.sync_scopes), sessions)

    def _parameters(self, node: cst.FunctionDef) -> None:
        state = self.state
        if state is None:
            return
        for param in [*node.params.params, *node.params.kwonly_params]:
            name = param.name.value
            code = self.source.code(param.with_changes(comma=cst.MaybeSentinel.DEFAULT))
            if name in state.target.sessions:
                typed = "AsyncDB" if name in state.target.provided else "AsyncSession"
                self._found(state, "dependency", param, True, code=code, form=f"{name}: {typed}")
            elif name in state.target.session_dependencies:
                self._dependency(state, param, code)
            model = state.target.mapped.get(name)
            if model is not None:
                origin = f"the dependency that gives `{name}`"
                state.held[name] = Held(model, Loader(origin, model, None, can_add=False))

    def _dependency(self, state: State, param: cst.Param, code: str) -> None:
        dependency = state.target.session_dependencies[param.name.value]
        if self.source.functions.get(getattr(dependency, "__name__", "")) is not None and (
            getattr(dependency, "__module__", None) == getattr(self.source.module, "__name__", "")
        ):
            state.facts.dependencies.append(dependency.__name__)
            form = f"async def {dependency.__name__}(...) on AsyncDB, in the draft"
            self._found(state, "dependency", param, True, code=code, form=form)
            return
        local = dependency_name(param)
        imported = self.facts.imports.imported.get(local or "")
        twin = state.target.twin_of(*imported) if imported and local else None
        label = getattr(dependency, "__qualname__", repr(dependency))
        if twin is not None and local is not None:
            self.facts.moved[local] = twin
            self._found(
                state, "dependency", param, True, code=code, form=f"from {twin} import {local}"
            )
            return
        why = (
            f"`{param.name.value}` depends on {label}, which takes the sync session: give it an "
            f"async twin (same name, on AsyncDB) and import that here"
        )
        self._found(state, "dependency", param, False, code=code, why=why,
                    form=f"an async {local or label} on AsyncDB")  # fmt: skip

    def visit_With(self, node: cst.With) -> None:
        state = self.state
        if state is None:
            return
        for item in node.items:
            call = item.item
            owner = session_method(call, state.facts.sessions)
            if owner is not None and owner[1] in CONTEXTS and isinstance(call, cst.Call):
                state.consumed.add(call)
                self.facts.rewrites[node] = rewrites.asynchronous_with
                self._found(state, "session", node, True, code=self.source.code(call),
                            form=f"async with {self.source.code(call)}:")  # fmt: skip
