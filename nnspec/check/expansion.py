"""How many graph nodes the layers section expands to, counted before anything is expanded (E209).

What the layers section may expand to (repetitions and block uses multiplied out) is decided
before the elaborator expands it: checking then costs time and memory linear in the source plus
at most MAX_GRAPH_NODES graph nodes (docs/security.md). `Expansion.plan` returns the outermost
repetitions and block uses that would take the total past the limit; the elaborator reports them
and puts a placeholder in their place.
"""
from __future__ import annotations

from typing import NamedTuple

from .. import catalog, ir
from ..catalog.schema import literal
from ..diagnostics import Diagnostic
from .common import MAX_BLOCK_DEPTH, MAX_REPEAT, first_item, has_activation, operands, subexpressions, tensor_like

# What the layers section may expand to (repetitions and block uses multiplied out), decided before
# anything is expanded (E209): checking then costs time and memory linear in the source plus at
# most this many graph nodes (docs/security.md).
MAX_GRAPH_NODES = 1_000_000
LEVELS_PER_NODE = 100  # a node inside 100 nested blocks counts twice: its name is that long
RECURSIVE_STEPS = 20_000  # steps counting inside blocks that use themselves (E202), which are not memoised


class TooComplex(Exception):
    """The expansion count itself took too many steps: more than MAX_GRAPH_NODES for distinct
    block instances (what it was counting is past the limit too), or more than RECURSIVE_STEPS
    inside blocks that use themselves (E202: the elaborator would follow every path through them)."""


def expansion_text(n: int) -> str:
    """1,234,567 up to a billion; then 10^12, 2 * 10^12, about 2.5 * 10^12 (no 4,300-digit str())."""
    if n < 10**9:
        return f"{n:,}"
    exp = int((n.bit_length() - 1) * 0.30103)  # a lower bound of log10(n), corrected below
    while 10 ** (exp + 1) <= n:
        exp += 1
    lead, rest = divmod(n, 10**exp)
    if rest == 0:
        return f"10^{exp}" if lead == 1 else f"{lead} * 10^{exp}"
    tenths = n * 10 // 10**exp
    return f"about {tenths // 10}.{tenths % 10} * 10^{exp}"


class Size(NamedTuple):
    """What an expression expands to: graph nodes, and the sum over them of how many block uses
    deep each one sits (below where it is counted from). A node's name grows with that depth
    (`b0_1.b1_1. ... .dense_1`), so deep nesting costs memory as well."""

    nodes: int
    depth: int = 0

    def __add__(self, other: "Size") -> "Size":  # type: ignore[override]
        return Size(self.nodes + other.nodes, self.depth + other.depth)

    def times(self, k: int) -> "Size":
        return Size(self.nodes * k, self.depth * k)

    def deeper(self) -> "Size":
        return Size(self.nodes, self.depth + self.nodes)

    @property
    def weight(self) -> int:
        """What counts against MAX_GRAPH_NODES: a node, plus 1/100 for each block it sits in
        (a node takes ~600 bytes, a level of its name ~7)."""
        return self.nodes + self.depth // LEVELS_PER_NODE


NONE, ONE = Size(0), Size(1)


class Expansion:
    """How many graph nodes the layers section expands to, counted before expanding anything.

    The count follows the elaborator's rules: a repetition multiplies (a search space as the count
    at its largest valid value, since a trial may choose it; an invalid count checks its operand
    once), a block use is its body (counted once per block and distinct arguments), every option of
    a `choice` counts (each one is checked), a layer, an activation, a placeholder for a wrong
    operation, `+` and `concat` count 1 (a layer with `activation=` 2), a tensor name 0; a
    statement counts at least 1 and an n-term sum n - 1, so that the count bounds the elaborator's
    steps as well as its nodes. `plan` walks the layers section and returns the outermost
    repetitions and block uses that take the total past the limit; the elaborator reports them
    (E209) and puts a placeholder in their place, so what it expands stays within the limit plus
    the layers written in the source.
    """

    def __init__(self, elab, limit: int):
        self.elab = elab
        self.blocks = elab.blocks
        self.limit = limit
        self.memo: dict = {}  # (block, its arguments) -> Size
        self.top: dict = {}  # (id(expr), role) -> Size, for the layers section's own expressions
        self.steps = 0  # inside block bodies: bounded by `limit`, else TooComplex
        self.recursive_steps = 0  # of those, inside blocks on a cycle: bounded by RECURSIVE_STEPS
        self.why = ""  # why the last TooComplex was raised
        self.recursive = self._on_cycles()
        self.refused: dict[int, tuple[ir.Expr, Diagnostic]] = {}
        self.total = 0

    def _on_cycles(self) -> set[str]:
        """The blocks that can reach themselves (E202): Tarjan's strongly connected components,
        iterative and linear in the blocks and their uses."""
        calls = {name: [c for c, _ in self.elab.block_calls(b)] for name, b in self.blocks.items()}
        index: dict[str, int] = {}
        low: dict[str, int] = {}
        stack: list[str] = []
        on_stack: set[str] = set()
        cyclic: set[str] = set()
        for root in calls:
            if root in index:
                continue
            work = [(root, iter(calls[root]))]
            index[root] = low[root] = len(index)
            stack.append(root)
            on_stack.add(root)
            while work:
                node, callees = work[-1]
                callee = next(callees, None)
                if callee is not None:
                    if callee not in index:
                        index[callee] = low[callee] = len(index)
                        stack.append(callee)
                        on_stack.add(callee)
                        work.append((callee, iter(calls[callee])))
                    elif callee in on_stack:
                        low[node] = min(low[node], index[callee])
                    continue
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1 or node in calls[node]:
                        cyclic.update(component)
        return cyclic

    def _step(self, role: str, e: ir.Expr, params, stack, env=None) -> Size:
        if not stack:  # the layers section: `plan` asks about the same expressions again
            key = (id(e), role)
            if key not in self.top:
                self.top[key] = getattr(self, "_" + role)(e, params, stack, env)
            return self.top[key]
        self.steps += 1
        if self.steps > self.limit:
            self.why = "instances"
            raise TooComplex
        if stack[-1] in self.recursive:  # not memoised: each path through the cycle costs again
            self.recursive_steps += 1
            if self.recursive_steps > RECURSIVE_STEPS:
                self.why = "recursion"
                raise TooComplex
        return getattr(self, "_" + role)(e, params, stack, env)

    def op(self, e, params=None, stack=(), env=None) -> Size:
        return self._step("op", e, params or {}, stack)

    def stmt(self, e, params, stack, env) -> Size:
        return self._step("stmt", e, params, stack, env)

    def tensor(self, e, params, stack, env) -> Size:
        return self._step("tensor", e, params, stack, env)

    # ---------------------------------------------------------------- the elaborator's rules
    def _op(self, e: ir.Expr, params, stack, env) -> Size:
        """An operation applied to a tensor (`_apply_op`)."""
        if isinstance(e, ir.Ident) and e.name in params:  # the caller's expression, substituted once
            e = params[e.name]
            if isinstance(e, ir.Ident):
                return self._block(ir.Call(e.name, (), e.span, e.span), params, stack) if e.name in self.blocks else ONE
        if isinstance(e, ir.Ident):
            return self._block(ir.Call(e.name, (), e.span, e.span), params, stack) if e.name in self.blocks else ONE
        if isinstance(e, ir.Group):
            e = e.inner
            if not isinstance(e, ir.Chain):
                return self.op(e, params, stack)
        if isinstance(e, ir.Chain):
            return sum((self.op(i, params, stack) for i in e.items), NONE)
        if isinstance(e, ir.Mul):
            count, once = self.repeat_count(e, params), self.op(e.left, params, stack)
            if self.default_is_wrong(e, params) and count * once.nodes < once.nodes + 1:
                return once + ONE  # E207: the operand once, then a placeholder
            return once.times(count)
        if isinstance(e, ir.Space):
            return sum((self.op(o, params, stack) for o in e.options), NONE) if e.kind == "choice" else ONE
        if isinstance(e, ir.Call):
            if e.name in self.blocks:
                return self._block(e, params, stack)
            entry = catalog.layers.get(e.name)
            return Size(1 + (entry is not None and has_activation(entry, e)))
        return ONE  # an activation, or a placeholder for a wrong operation

    def _stmt(self, e: ir.Expr, params, stack, env) -> Size:
        """A chain from the current tensor or from a tensor expression (`_chain`)."""
        items = e.items if isinstance(e, ir.Chain) else (e,)
        first = items[0]
        n = self.tensor(first, params, stack, env) if tensor_like(first, env) else self.op(first, params, stack)
        return sum((self.op(i, params, stack) for i in items[1:]), n)

    def _tensor(self, e: ir.Expr, params, stack, env) -> Size:
        """A tensor expression (`_tensor`): a name, a sum, concat(...), activation(tensor), a chain."""
        if isinstance(e, ir.Ident):
            return NONE
        if isinstance(e, ir.Group):
            return self.tensor(e.inner, params, stack, env)
        if isinstance(e, ir.Chain):
            return self.stmt(e, params, stack, env)
        terms = operands(e)
        own = Size(max(1, len(terms) - 1))  # one node; an n-term sum is n - 1 steps of work
        return sum((self.tensor(t, params, stack, env) for t in terms if tensor_like(t, env)), own)

    def _block(self, call: ir.Call, params, stack: tuple[str, ...]) -> Size:
        block = self.blocks[call.name]
        if block.name in stack or len(stack) >= MAX_BLOCK_DEPTH:
            return ONE  # recursion (E202) or too deep (E004): the elaborator stops there
        bound: dict[str, ir.Expr] = {}
        for arg, param in zip([a for a in call.args if a.name is None], block.params):
            bound[param] = self.elab.substitute(arg.value, params)
        for arg in call.args:
            if arg.name is not None:
                bound[arg.name] = self.elab.substitute(arg.value, params)
        key = None
        if block.name not in self.recursive:  # then its count does not depend on the blocks above it
            key = (block.name, tuple(sorted(bound.items(), key=lambda kv: kv[0])))
            if key in self.memo:
                return self.memo[key]
        inner, env, total = stack + (block.name,), {"in"}, NONE
        for st in block.body:
            size = self.stmt(st.expr, bound, inner, env)
            total += size if size.nodes else Size(1, size.depth)  # a statement is at least a step
            if st.target is not None:
                env.add(st.target)
        total = (total if total.nodes else ONE).deeper()  # its nodes sit one block deeper
        if key is not None:
            self.memo[key] = total
        return total

    def default_is_wrong(self, e: ir.Mul, params) -> bool:
        """A count the checker refuses (E207): its operand is checked once, then a placeholder."""
        value = literal(self.elab.substitute(e.right, params), {}, "repeat")
        return isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_REPEAT

    def repeat_count(self, e: ir.Mul, params) -> int:
        """The count a repetition multiplies by: the largest valid one, a search space's included
        (1 when none is valid)."""
        right = self.elab.substitute(e.right, params)
        if isinstance(right, ir.Space) and right.kind != "choice":  # int_range(low, high): at most high
            low = literal(right.options[0], {}, "repeat") if right.options else None
            if not (isinstance(low, (int, float)) and not isinstance(low, bool) and low <= MAX_REPEAT):
                return 1
            options = right.options[1:2]
        else:
            options = right.options if isinstance(right, ir.Space) else (right,)
        best = 1
        for o in options:
            value = literal(o, {}, "repeat")
            if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
                best = max(best, min(value, MAX_REPEAT))
        return best

    # ---------------------------------------------------------------- refusing
    def plan(self, stmts: tuple[ir.Stmt, ...], inputs) -> dict[int, tuple[ir.Expr, Diagnostic]]:
        """{id(expr): (expr, its E209)} for each outermost repetition or block use of the layers
        section that would take the total past the limit; each then counts 1 (its placeholder).
        `self.total`: the weight of what the elaborator will make (an upper bound)."""
        env = set(inputs)
        total = 1 if len(env) != 1 and stmts and not tensor_like(first_item(stmts[0].expr), env) else 0
        for st in stmts:  # ^ a first statement with no tensor to start from gets a placeholder (E208)
            total = self._walk_stmt(st.expr, total, env)
            if st.target is not None:
                env.add(st.target)
        self.total = total
        return self.refused

    def _fits(self, role: str, e: ir.Expr, total: int, env) -> tuple[bool, Size | None]:
        try:
            size = self._step(role, e, {}, (), env)
        except TooComplex:
            return False, None
        return total + size.weight <= self.limit, size

    def _walk_stmt(self, e: ir.Expr, total: int, env) -> int:
        fits, size = self._fits("stmt", e, total, env)
        if fits:
            return total + size.weight
        items = e.items if isinstance(e, ir.Chain) else (e,)
        total = self._walk_tensor(items[0], total, env) if tensor_like(items[0], env) else \
            self._walk_op(items[0], total)
        for op in items[1:]:
            total = self._walk_op(op, total)
        return total

    def _walk_tensor(self, e: ir.Expr, total: int, env) -> int:
        fits, size = self._fits("tensor", e, total, env)
        if fits:
            return total + size.weight
        if isinstance(e, ir.Group):
            return self._walk_tensor(e.inner, total, env)
        if isinstance(e, ir.Chain):
            return self._walk_stmt(e, total, env)
        if isinstance(e, ir.Ident):
            return total
        terms = operands(e)
        total += max(1, len(terms) - 1)
        for t in terms:
            if tensor_like(t, env):
                total = self._walk_tensor(t, total, env)
        return total

    def _walk_op(self, e: ir.Expr, total: int) -> int:
        fits, size = self._fits("op", e, total, None)
        if fits:
            return total + size.weight
        if isinstance(e, ir.Mul) or (isinstance(e, (ir.Ident, ir.Call)) and e.name in self.blocks):
            self.refused[id(e)] = (e, self._error(e, size, total))
            return total + 1
        inner = e.inner if isinstance(e, ir.Group) else e
        parts = inner.items if isinstance(inner, ir.Chain) else \
            inner.options if isinstance(inner, ir.Space) and inner.kind == "choice" else None
        if parts is None:
            if inner is not e:
                return self._walk_op(inner, total)
            return total + (size.weight if size else 1)  # a layer written in the source: counted, never refused
        for part in parts:
            total = self._walk_op(part, total)
        return total

    def _error(self, e: ir.Expr, size: Size | None, total: int) -> Diagnostic:
        limit = f"{self.limit:,}"
        what = "this repetition" if isinstance(e, ir.Mul) else f"this use of block '{e.name}'"
        if size is None and self.why == "recursion":
            said = (f"expands blocks that use themselves (E202) along too many paths: more than "
                    f"{RECURSIVE_STEPS:,} steps to count them")
        elif size is None:
            said = f"expands to more than {limit} layers (too many distinct block instances to count them)"
        else:
            said = f"expands to {expansion_text(size.nodes)} layers"
            if total + size.nodes <= self.limit:  # deep in blocks: their names made them count more
                deep = size.depth // max(size.nodes, 1)
                said += (f" nested {deep:,} block{'s' if deep != 1 else ''} deep on average, which count as "
                         f"{expansion_text(size.weight)} (a layer's name grows with its nesting)")
            if size.weight <= self.limit:
                said += f", which with the {total:,} before it makes {expansion_text(total + size.weight)}"
            said += f"; the limit is {limit}"
        notes = [f"the search space at {m.right.span} counts at its largest valid count, "
                 f"{self.repeat_count(m, {}):,}, since a trial may choose it"
                 for m in subexpressions(e) if isinstance(m, ir.Mul) and isinstance(m.right, ir.Space)][:3]
        return Diagnostic("error", "E209", f"{what} {said}", e.span, tuple(notes),
                          "repeat less: nested repetitions, and blocks that repeat blocks, multiply their counts")
