"""The analysis of one module: each top-level function read once, in order, never run.

A function's sync session is whichever parameter its runtime signature types
as `Session` (`SyncDB`, an app's own alias, `Depends(get_db)`). Reading the
function's statements in order, the analysis keeps what each name holds (a
query in the making, ORM objects and what was loaded with them) and records
every sync-only idiom with its async form (`gateway.migrate.facts`): Query
chains, lean patterns, session calls, relationship reads that would load
lazily, blocking calls, and calls into the app's own functions, which
`gateway.migrate.modules` follows and finishes.
"""

from __future__ import annotations

import libcst as cst
from libcst.metadata import ExpressionContext, ExpressionContextProvider

from gateway.migrate import patterns, rewrites
from gateway.migrate.calls import Calls
from gateway.migrate.chains import Chain
from gateway.migrate.facts import FunctionFacts
from gateway.migrate.idioms import one_line
from gateway.migrate.layout import comments_of, leading
from gateway.migrate.orm import is_mapped, lazy_relationships, schema_fields
from gateway.migrate.reader import State, Target
from gateway.migrate.results import held_result
from gateway.migrate.syntax import Counting, names_in
from gateway.migrate.tracking import Held, held_by

__all__ = ["Reader", "Target"]


class Reader(Calls):
    """Reads every targeted top-level function of one module into `facts`."""

    def visit_FunctionDef(self, node: cst.FunctionDef) -> bool:
        if self.state is not None:
            self.state.sync_scopes += node.asynchronous is None
            return True
        target = self.targets.get(node.name.value)
        if target is None or self.source.functions.get(node.name.value) is not node:
            return False
        self.state = self._state(node, target)
        self._parameters(node)
        return True

    def leave_FunctionDef(self, original_node: cst.FunctionDef) -> None:
        state = self.state
        if state is None:
            return
        if state.facts.node is original_node:
            self.facts.functions[original_node.name.value] = state.facts
            self.state = None
        else:
            state.sync_scopes -= original_node.asynchronous is None

    def _state(self, node: cst.FunctionDef, target: Target) -> State:
        facts = FunctionFacts(node.name.value, node, target.endpoint, set(target.sessions))
        body = node.body.body if isinstance(node.body, cst.IndentedBlock) else ()
        counted = Counting()
        node.body.visit(counted)
        return State(
            facts, target, {statement: i for i, statement in enumerate(body)}, counted.reads,
            counted.writes,
        )  # fmt: skip

    def visit_Lambda(self, node: cst.Lambda) -> None:
        if self.state is not None:
            self.state.sync_scopes += 1

    def leave_Lambda(self, original_node: cst.Lambda) -> None:
        if self.state is not None:
            self.state.sync_scopes -= 1

    def visit_GeneratorExp(self, node: cst.GeneratorExp) -> None:
        if self.state is not None:
            self.state.sync_scopes += 1
            self._bind_comprehension(node.for_in)

    def leave_GeneratorExp(self, original_node: cst.GeneratorExp) -> None:
        if self.state is not None:
            self.state.sync_scopes -= 1

    def visit_For(self, node: cst.For) -> None:
        if self.state is not None:
            self.state.loops += 1
            self._bind_loop(node.target, node.iter)

    def leave_For(self, original_node: cst.For) -> None:
        if self.state is not None:
            self.state.loops -= 1

    def visit_While(self, node: cst.While) -> None:
        if self.state is not None:
            self.state.loops += 1

    def leave_While(self, original_node: cst.While) -> None:
        if self.state is not None:
            self.state.loops -= 1

    def visit_ListComp(self, node: cst.ListComp) -> None:
        self._bind_comprehension(node.for_in)

    def visit_SetComp(self, node: cst.SetComp) -> None:
        self._bind_comprehension(node.for_in)

    def visit_DictComp(self, node: cst.DictComp) -> None:
        self._bind_comprehension(node.for_in)

    def _bind_comprehension(self, clause: cst.CompFor | None) -> None:
        """Bind a comprehension's targets first: its element is read before its `for`s."""
        while clause is not None and self.state is not None:
            self._bind_loop(clause.target, clause.iter)
            clause = clause.inner_for_in

    def on_visit(self, node: cst.CSTNode) -> bool:
        state = self.state
        if state is not None and isinstance(node, cst.BaseStatement):
            if node in state.body and node not in state.skipped:
                self._lean(state, node)
            if node in state.skipped:
                return False
            state.statements.append(node)
        return super().on_visit(node)

    def on_leave(self, original_node: cst.CSTNode) -> None:
        state = self.state
        super().on_leave(original_node)
        if state is not None and state.statements and state.statements[-1] is original_node:
            state.statements.pop()

    def _lean(self, state: State, node: cst.BaseStatement) -> None:
        body = list(state.body)
        scope = patterns.Scope(
            state.facts.sessions, state.queries, self.value_of, self.name_of,
            state.target.response_model if state.target.endpoint else None, self.facts.imports,
            lambda name: state.reads[name], state.writes,
        )  # fmt: skip
        lean = patterns.match(body, state.body[node], scope)
        if lean is None:
            return
        first = lean.statements[0]
        kept = [*leading(first), *comments_of(lean.statements)]
        replacement = [lean.replacement[0].with_changes(leading_lines=kept)]
        self.facts.replaced[first] = replacement + lean.replacement[1:]
        self.facts.removed.update(lean.statements[1:])
        state.skipped.update(lean.statements)
        for call, name in lean.parametrized.items():
            self.facts.rewrites[call] = rewrites.subscripted(name)
        if lean.returns is not None:
            state.facts.answers = lean.returns
        code = "; ".join(one_line(self.source.code(s)) for s in lean.statements)
        form = "; ".join(one_line(self.source.code(s)) for s in lean.replacement)
        self._found(state, "lean", first, True, code=code, form=form)

    def leave_Assign(self, original_node: cst.Assign) -> None:
        if self.state is None:
            return
        for target in original_node.targets:
            self._bind(target.target, original_node.value)

    def leave_AnnAssign(self, original_node: cst.AnnAssign) -> None:
        if self.state is not None and original_node.value is not None:
            self._bind(original_node.target, original_node.value)

    def leave_Return(self, original_node: cst.Return) -> None:
        state = self.state
        if state is None or not state.facts.endpoint or original_node.value is None:
            return
        fields = schema_fields(state.target.response_model)
        direct = held_result(original_node.value, state.loaders, self.value_of, self.source.line)
        returned = [state.held.get(name) for name in names_in(original_node.value)]
        for held in [direct, *returned]:
            if held is None:
                continue
            element = held.element()
            for relationship in sorted(lazy_relationships(element.model)):
                if relationship in fields and element.unloaded(relationship):
                    self._lazy(state, original_node, element, relationship, returned=True)

    def _bind(self, target: cst.BaseAssignTargetExpression, value: cst.BaseExpression) -> None:
        state = self.state
        if state is None:
            return
        if not isinstance(target, cst.Name):
            for name in names_in(target):
                state.queries.pop(name, None)
                state.held.pop(name, None)
            return
        name = target.value
        chain = state.chains.get(value)
        state.queries.pop(name, None)
        state.held.pop(name, None)
        if chain is not None and chain.run is None and chain.problem is None:
            state.queries[name] = chain
            return
        held = self._held(value, chain)
        if held is not None:
            state.held[name] = held

    def _held(self, value: cst.BaseExpression, chain: Chain | None) -> Held | None:
        state = self.state
        if state is None:
            return None
        if chain is not None and is_mapped(chain.model):
            if chain.run in ("first", "one", "one_or_none", "get"):
                return Held(chain.model, chain.loader)
            if chain.run == "all":
                return Held(chain.model, chain.loader, collection=True)
        if isinstance(value, cst.Call) and is_mapped(self.value_of(value.func)):
            return Held(self.value_of(value.func), None)
        return held_result(value, state.loaders, self.value_of, self.source.line)

    def _bind_loop(
        self, target: cst.BaseAssignTargetExpression, iterated: cst.BaseExpression
    ) -> None:
        state = self.state
        if state is None or not isinstance(target, cst.Name):
            return
        held = held_by(iterated, state.held) or held_result(
            iterated, state.loaders, self.value_of, self.source.line
        )
        if held is not None and held.collection:
            state.held[target.value] = held.element()
        else:
            state.held.pop(target.value, None)

    def visit_Attribute(self, node: cst.Attribute) -> None:
        state = self.state
        if state is None:
            return
        context = self.get_metadata(ExpressionContextProvider, node, None)
        owner = held_by(node.value, state.held)
        if context != ExpressionContext.LOAD or owner is None or owner.collection:
            return
        if owner.unloaded(node.attr.value):
            self._lazy(state, node, owner, node.attr.value, returned=False)

    def _lazy(
        self, state: State, node: cst.CSTNode, owner: Held, name: str, *, returned: bool
    ) -> None:
        loader = owner.loader
        path = (*owner.path, name)
        if loader is None or (id(loader), path) in state.lazy_reported:
            return
        state.lazy_reported.add((id(loader), path))
        relation = f"{getattr(owner.model, '__name__', owner.model)}.{name}"
        added = loader.add(path, self.classes, self.facts.imports)
        read = "the response schema reads" if returned else "reads"
        code = self.source.code(node) if not returned else f"return ... ({relation})"
        if added:
            option = self.source.code(loader.added[path])
            form = f".options({option}) on {loader.origin}"
            self._found(state, "lazy_load", node, True, code=code, form=form)
            return
        why = (
            f"{read} {relation}, which {loader.origin} does not load: under AsyncSession a lazy "
            f"load raises; load it with selectinload({relation}) where the objects are fetched"
        )
        self._found(state, "lazy_load", node, False, code=code, why=why,
                    form=f"selectinload({relation}) on {loader.origin}")  # fmt: skip
