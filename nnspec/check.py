"""The checker: names, arguments, shape inference and cross-checks over a spec IR.

It elaborates the spec into the graph IR (blocks and repetitions expanded, every layer
instance with a unique readable name and an inferred output type) and collects ALL
diagnostics in one pass; it never stops at the first problem and never imports torch.
"""
from __future__ import annotations

import bisect
import functools
import itertools
import re
from dataclasses import replace
from typing import Any, Mapping, NamedTuple

from . import catalog, ir, memory
from .catalog.base import ShapeError, feature_axis
from .catalog.schema import Bound, Param, bind, coerce, literal
from .catalog.settings import DATA_SOURCES, SCHEDULES, SEARCH_SETTINGS, TRAIN_SETTINGS
from .checked import Checked, Task
from .diagnostics import Diagnostic, Sink, Span, suggest
from .memory import MAX_PARAM_BYTES, MAX_TRAIN_BYTES, count_text, memory_text, synthetic_bytes  # noqa: F401 (re-exported)

MAX_ELEMENTS = 2**31  # a single activation larger than this cannot be trained on one device
MAX_REPEAT = 10_000
MAX_BLOCK_DEPTH = 256  # blocks using blocks; 200-deep nesting must check
# What the layers section may expand to (repetitions and block uses multiplied out), decided before
# anything is expanded (E209): checking then costs time and memory linear in the source plus at
# most this many graph nodes (docs/security.md).
MAX_GRAPH_NODES = 1_000_000
LEVELS_PER_NODE = 100  # a node inside 100 nested blocks counts twice: its name is that long
RECURSIVE_STEPS = 20_000  # steps counting inside blocks that use themselves (E202), which are not memoised

data_sources = catalog.Registry("data source", DATA_SOURCES)
schedules = catalog.Registry("schedule", SCHEDULES)


def header_span(spec: ir.Spec) -> Span:
    """`model NAME`: where diagnostics about the whole model point (not the whole body)."""
    sp = spec.span
    return Span(sp.line, sp.col, sp.line, sp.col + len("model ") + len(spec.name))


@functools.lru_cache(maxsize=1024)  # a few dozen kinds (and block names), asked for once per node
def snake(name: str) -> str:
    return re.sub(r"(?<=[a-z])(?=[A-Z])", "_", name).lower()


class _Scope:
    """One level of elaboration: the top level, or one block instance."""

    def __init__(self, prefix: tuple[str, ...], env: dict[str, str], params: Mapping[str, ir.Expr],
                 block_stack: tuple[str, ...]):
        self.prefix = prefix
        self.env = env  # tensor name -> node name
        self.params = params  # block parameter -> the caller's expression
        self.block_stack = block_stack
        self.counters: dict[str, int] = {}
        self.used: set[str] = set()
        self.defined: dict[str, Span] = {}
        self.names_at: dict[str, set[str]] = {}  # node -> the tensor names bound to it now
        for name, node in env.items():
            self.names_at.setdefault(node, set()).add(name)

    def bind(self, name: str, node: str) -> None:
        old = self.env.get(name)
        if old is not None:
            self.names_at[old].discard(name)
        self.env[name] = node
        self.names_at.setdefault(node, set()).add(name)


class _TooComplex(Exception):
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


class _Size(NamedTuple):
    """What an expression expands to: graph nodes, and the sum over them of how many block uses
    deep each one sits (below where it is counted from). A node's name grows with that depth
    (`b0_1.b1_1. ... .dense_1`), so deep nesting costs memory as well."""

    nodes: int
    depth: int = 0

    def __add__(self, other: "_Size") -> "_Size":  # type: ignore[override]
        return _Size(self.nodes + other.nodes, self.depth + other.depth)

    def times(self, k: int) -> "_Size":
        return _Size(self.nodes * k, self.depth * k)

    def deeper(self) -> "_Size":
        return _Size(self.nodes, self.depth + self.nodes)

    @property
    def weight(self) -> int:
        """What counts against MAX_GRAPH_NODES: a node, plus 1/100 for each block it sits in
        (a node takes ~600 bytes, a level of its name ~7)."""
        return self.nodes + self.depth // LEVELS_PER_NODE


NONE, ONE = _Size(0), _Size(1)


class _Expansion:
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

    def __init__(self, elab: "Elaborator", limit: int):
        self.elab = elab
        self.blocks = elab.blocks
        self.limit = limit
        self.memo: dict = {}  # (block, its arguments) -> _Size
        self.top: dict = {}  # (id(expr), role) -> _Size, for the layers section's own expressions
        self.steps = 0  # inside block bodies: bounded by `limit`, else _TooComplex
        self.recursive_steps = 0  # of those, inside blocks on a cycle: bounded by RECURSIVE_STEPS
        self.why = ""  # why the last _TooComplex was raised
        self.recursive = self._on_cycles()
        self.refused: dict[int, tuple[ir.Expr, Diagnostic]] = {}
        self.total = 0

    def _on_cycles(self) -> set[str]:
        """The blocks that can reach themselves (E202): Tarjan's strongly connected components,
        iterative and linear in the blocks and their uses."""
        calls = {name: [c for c, _ in self.elab._block_calls(b)] for name, b in self.blocks.items()}
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

    def _step(self, role: str, e: ir.Expr, params, stack, env=None) -> _Size:
        if not stack:  # the layers section: `plan` asks about the same expressions again
            key = (id(e), role)
            if key not in self.top:
                self.top[key] = getattr(self, "_" + role)(e, params, stack, env)
            return self.top[key]
        self.steps += 1
        if self.steps > self.limit:
            self.why = "instances"
            raise _TooComplex
        if stack[-1] in self.recursive:  # not memoised: each path through the cycle costs again
            self.recursive_steps += 1
            if self.recursive_steps > RECURSIVE_STEPS:
                self.why = "recursion"
                raise _TooComplex
        return getattr(self, "_" + role)(e, params, stack, env)

    def op(self, e, params=None, stack=(), env=None) -> _Size:
        return self._step("op", e, params or {}, stack)

    def stmt(self, e, params, stack, env) -> _Size:
        return self._step("stmt", e, params, stack, env)

    def tensor(self, e, params, stack, env) -> _Size:
        return self._step("tensor", e, params, stack, env)

    # ---------------------------------------------------------------- the elaborator's rules
    def _op(self, e: ir.Expr, params, stack, env) -> _Size:
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
            return _Size(1 + (entry is not None and _has_activation(entry, e)))
        return ONE  # an activation, or a placeholder for a wrong operation

    def _stmt(self, e: ir.Expr, params, stack, env) -> _Size:
        """A chain from the current tensor or from a tensor expression (`_chain`)."""
        items = e.items if isinstance(e, ir.Chain) else (e,)
        first = items[0]
        n = self.tensor(first, params, stack, env) if _tensor_like(first, env) else self.op(first, params, stack)
        return sum((self.op(i, params, stack) for i in items[1:]), n)

    def _tensor(self, e: ir.Expr, params, stack, env) -> _Size:
        """A tensor expression (`_tensor`): a name, a sum, concat(...), activation(tensor), a chain."""
        if isinstance(e, ir.Ident):
            return NONE
        if isinstance(e, ir.Group):
            return self.tensor(e.inner, params, stack, env)
        if isinstance(e, ir.Chain):
            return self.stmt(e, params, stack, env)
        terms = _operands(e)
        own = _Size(max(1, len(terms) - 1))  # one node; an n-term sum is n - 1 steps of work
        return sum((self.tensor(t, params, stack, env) for t in terms if _tensor_like(t, env)), own)

    def _block(self, call: ir.Call, params, stack: tuple[str, ...]) -> _Size:
        block = self.blocks[call.name]
        if block.name in stack or len(stack) >= MAX_BLOCK_DEPTH:
            return ONE  # recursion (E202) or too deep (E004): the elaborator stops there
        scope = _Scope((), {}, params, ())
        bound: dict[str, ir.Expr] = {}
        for arg, param in zip([a for a in call.args if a.name is None], block.params):
            bound[param] = self.elab._resolve(arg.value, scope)
        for arg in call.args:
            if arg.name is not None:
                bound[arg.name] = self.elab._resolve(arg.value, scope)
        key = None
        if block.name not in self.recursive:  # then its count does not depend on the blocks above it
            key = (block.name, tuple(sorted(bound.items(), key=lambda kv: kv[0])))
            if key in self.memo:
                return self.memo[key]
        inner, env, total = stack + (block.name,), {"in"}, NONE
        for st in block.body:
            size = self.stmt(st.expr, bound, inner, env)
            total += size if size.nodes else _Size(1, size.depth)  # a statement is at least a step
            if st.target is not None:
                env.add(st.target)
        total = (total if total.nodes else ONE).deeper()  # its nodes sit one block deeper
        if key is not None:
            self.memo[key] = total
        return total

    def default_is_wrong(self, e: ir.Mul, params) -> bool:
        """A count the checker refuses (E207): its operand is checked once, then a placeholder."""
        value = literal(self.elab._resolve(e.right, _Scope((), {}, params, ())), {}, "repeat")
        return isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_REPEAT

    def repeat_count(self, e: ir.Mul, params) -> int:
        """The count a repetition multiplies by: the largest valid one, a search space's included
        (1 when none is valid)."""
        right = self.elab._resolve(e.right, _Scope((), {}, params, ()))
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
        total = 1 if len(env) != 1 and stmts and not _tensor_like(_first_item(stmts[0].expr), env) else 0
        for st in stmts:  # ^ a first statement with no tensor to start from gets a placeholder (E208)
            total = self._walk_stmt(st.expr, total, env)
            if st.target is not None:
                env.add(st.target)
        self.total = total
        return self.refused

    def _fits(self, role: str, e: ir.Expr, total: int, env) -> tuple[bool, _Size | None]:
        try:
            size = self._step(role, e, {}, (), env)
        except _TooComplex:
            return False, None
        return total + size.weight <= self.limit, size

    def _walk_stmt(self, e: ir.Expr, total: int, env) -> int:
        fits, size = self._fits("stmt", e, total, env)
        if fits:
            return total + size.weight
        items = e.items if isinstance(e, ir.Chain) else (e,)
        total = self._walk_tensor(items[0], total, env) if _tensor_like(items[0], env) else \
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
        terms = _operands(e)
        total += max(1, len(terms) - 1)
        for t in terms:
            if _tensor_like(t, env):
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

    def _error(self, e: ir.Expr, size: _Size | None, total: int) -> Diagnostic:
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
                 for m in _subexpressions(e) if isinstance(m, ir.Mul) and isinstance(m.right, ir.Space)][:3]
        return Diagnostic("error", "E209", f"{what} {said}", e.span, tuple(notes),
                          "repeat less: nested repetitions, and blocks that repeat blocks, multiply their counts")


def _tensor_like(e: ir.Expr, env) -> bool:
    """The elaborator's `_is_tensor`, for the tensor names `env` defined so far."""
    if isinstance(e, ir.Ident):
        return e.name in env
    if isinstance(e, ir.Add):
        return True
    if isinstance(e, ir.Call):
        if e.name == "concat":
            return True
        first = e.positional[:1]
        return e.name in catalog.activations and bool(first) and _tensor_like(first[0], env)
    if isinstance(e, ir.Chain):
        return _tensor_like(e.items[0], env)
    if isinstance(e, ir.Group):
        return _tensor_like(e.inner, env)
    return False


def _first_item(e: ir.Expr) -> ir.Expr:
    return e.items[0] if isinstance(e, ir.Chain) else e


def _operands(e: ir.Expr) -> tuple:
    """The tensors a sum, concat(...) or activation(tensor) combines."""
    if isinstance(e, ir.Add):
        return e.terms
    if isinstance(e, ir.Call) and e.name == "concat":
        return tuple(a.value for a in e.args)
    if isinstance(e, ir.Call):
        return e.positional[:1]
    return ()


def _names_in(expr: ir.Expr) -> set[str]:
    """Every bare name and called name in an expression (tensors, blocks, layers)."""
    return {e.name for e in _subexpressions(expr) if isinstance(e, (ir.Ident, ir.Call))}


def _subexpressions(expr: ir.Expr) -> list[ir.Expr]:
    """An expression and every expression inside it, in source order."""
    found: list[ir.Expr] = []
    todo: list = [expr]
    while todo:
        e = todo.pop()
        found.append(e)
        if isinstance(e, ir.Call):
            todo.extend(a.value for a in e.args)
        elif isinstance(e, (ir.Chain, ir.ListExpr)):
            todo.extend(e.items)
        elif isinstance(e, ir.Add):
            todo.extend(e.terms)
        elif isinstance(e, ir.Mul):
            todo.extend((e.left, e.right))
        elif isinstance(e, ir.Group):
            todo.append(e.inner)
        elif isinstance(e, ir.Space):
            todo.extend(e.options)
        elif isinstance(e, ir.Neg):
            todo.append(e.value)
    return sorted(found, key=lambda e: (e.span.line, e.span.col))


def _has_activation(entry: catalog.LayerEntry, call: ir.Call) -> bool:
    """Whether a layer call gives an activation (which the elaborator makes a second node)."""
    if entry.name == "Bidirectional":
        return True
    if not entry.activation_param:
        return False
    if any(a.name == "activation" for a in call.args):
        return True
    names = [p.name for p in entry.params]
    return "activation" in names and len(call.positional) > names.index("activation")


class Elaborator:
    def __init__(self, spec: ir.Spec, sink: Sink):
        self.spec = spec
        self.sink = sink
        self.nodes: dict[str, ir.Node] = {}
        self.order: list[str] = []
        self.aliases: dict[str, str] = {}
        self.blocks = {}
        self.instantiated: set[str] = set()  # blocks used at least once
        for b in spec.blocks:
            if b.name in self.blocks:
                sink.error("E018", f"block '{b.name}' is defined twice", b.span,
                           notes=[f"the first definition is at line {self.blocks[b.name].span.line}"])
                continue
            if b.name in catalog.layers or b.name in catalog.activations:
                sink.error("E018", f"block '{b.name}' has the name of a catalog entry", b.span,
                           help="choose another name for the block")
            self.blocks[b.name] = b
        self.repeat_spaces: tuple[ir.Space, ...] = ()
        self.refused: dict[int, tuple[ir.Expr, Diagnostic]] = {}
        self.marks: list[tuple[int, int, str, ir.Space]] = []  # (from, to) in self.order, key, space
        self._check_recursion()

    # ------------------------------------------------------------ blocks calling blocks
    def _block_calls(self, block: ir.Block) -> list[tuple[str, Span]]:
        """The blocks a block's body uses, with the span of each use, in source order."""
        found: list[tuple[str, Span]] = []
        todo: list = [st.expr for st in block.body]
        while todo:
            e = todo.pop()
            if isinstance(e, ir.Call):
                if e.name in self.blocks:
                    found.append((e.name, e.span))
                todo.extend(a.value for a in e.args)
            elif isinstance(e, ir.Ident) and e.name in self.blocks:
                found.append((e.name, e.span))
            elif isinstance(e, (ir.Chain, ir.ListExpr)):
                todo.extend(e.items)
            elif isinstance(e, ir.Add):
                todo.extend(e.terms)
            elif isinstance(e, ir.Mul):
                todo.extend((e.left, e.right))
            elif isinstance(e, ir.Group):
                todo.append(e.inner)
            elif isinstance(e, ir.Space):
                todo.extend(e.options)
        return sorted(found, key=lambda f: (f[1].line, f[1].col))

    def _check_recursion(self) -> None:
        """Report every cycle among blocks once, at the use that closes it, used or not."""
        state: dict[str, str] = {}  # "active" while on the path, "done" after
        for root in self.blocks:
            if root in state:
                continue
            path, stack = [root], [iter(self._block_calls(self.blocks[root]))]
            at = {root: 0}  # position on the path
            state[root] = "active"
            while stack:
                step = next(stack[-1], None)
                if step is None:
                    state[path[-1]] = "done"
                    del at[path.pop()]
                    stack.pop()
                    continue
                callee, span = step
                if state.get(callee) == "active":
                    start = at[callee]
                    length = len(path) - start + 1
                    cycle = path[start:] + [callee] if length <= 9 else \
                        path[start:start + 4] + [f"... {length - 8:,} more ..."] + path[-3:] + [callee]  # its ends
                    self.sink.error("E202", f"block '{callee}' uses itself (recursion through {' -> '.join(cycle)})",
                                    span, help="blocks cannot be recursive; repeat with `Block(...) * n` instead")
                elif callee not in state:
                    state[callee] = "active"
                    at[callee] = len(path)
                    path.append(callee)
                    stack.append(iter(self._block_calls(self.blocks[callee])))

    # ------------------------------------------------------------ graph building
    def run(self) -> ir.Graph:
        env: dict[str, str] = {}
        seen: dict[str, Span] = {}
        for inp in self.spec.inputs:
            if inp.name in seen:
                self.sink.error("E015", f"input '{inp.name}' is declared twice", inp.span,
                                notes=[f"first declared at line {seen[inp.name].line}"])
                continue
            seen[inp.name] = inp.span
            t = ir.TensorType(inp.shape, inp.dtype) if inp.shape else None  # no dimensions: E014, type unknown
            if t is not None:
                self._check_size(t, inp.span, f"input '{inp.name}'")
            self._add(ir.Node(inp.name, "input", "input", {}, (), t, inp.span), named=True)
            env[inp.name] = inp.name
        if not self.spec.inputs:
            self.sink.error("E011", "the model declares no input", header_span(self.spec),
                            help="declare one, e.g. `input x: [4]` (shape without the batch dimension)")
        if not self.spec.layers:
            where = self.spec.sections.get("layers", header_span(self.spec))
            self.sink.error("E011", "the model has no layers", where,
                            help="add a `layers { ... }` section, e.g. layers { Dense(1) }")
        self.refused = _Expansion(self, MAX_GRAPH_NODES).plan(self.spec.layers, env)  # before expanding anything
        for expr, diag in self.refused.values():
            self.sink.add(diag)
            self._mark_used_blocks(expr)
        top = _Scope((), env, {}, ())
        top.defined = {k: seen[k] for k in env}
        default = next(iter(env.values())) if len(env) == 1 else None  # one input (declared once, or twice: E015)
        out = self._stmts(self.spec.layers, top, default)
        for name, sp in top.defined.items():
            if name not in top.used and name != (self.nodes[out].alias if out in self.nodes else None):
                if out is not None and top.env.get(name) == out:
                    continue
                what = "input" if name in seen else "tensor"
                self.sink.warning("W201", f"{what} '{name}' is never used", sp,
                                  help="use it in a chain, or remove it")
        for block in self.blocks.values():
            if block.name not in self.instantiated:
                sp = block.span
                self.sink.warning("W202", f"block '{block.name}' is never used", Span(
                    sp.line, sp.col, sp.line, sp.col + len("block ") + len(block.name)),
                    help="use it in `layers`, or remove it: the body of an unused block is not checked")
        self._apply_marks()
        nodes = tuple(self._with_alias(self.nodes[n]) for n in self.order)
        return ir.Graph(nodes, tuple(i.name for i in self.spec.inputs if i.name in self.nodes), out)

    def _mark_used_blocks(self, expr: ir.Expr) -> None:
        """A refused repetition or block use is not expanded, but the blocks it names are used (no W202)."""
        todo = [name for name in _names_in(expr) if name in self.blocks]
        while todo:
            name = todo.pop()
            if name not in self.instantiated:
                self.instantiated.add(name)
                todo.extend(callee for callee, _ in self._block_calls(self.blocks[name]))

    def _with_alias(self, node: ir.Node) -> ir.Node:
        alias = self.aliases.get(node.name)
        return node if node.alias == alias else replace(node, alias=alias)  # most nodes have none

    def _add(self, node: ir.Node, named: bool = False) -> str:
        self.nodes[node.name] = node
        self.order.append(node.name)
        return node.name

    def _fresh(self, scope: _Scope, base: str) -> str:
        scope.counters[base] = scope.counters.get(base, 0) + 1
        local = f"{base}_{scope.counters[base]}"
        full = ".".join(scope.prefix + (local,))
        while full in self.nodes:  # a tensor or input already holds this name
            scope.counters[base] += 1
            local = f"{base}_{scope.counters[base]}"
            full = ".".join(scope.prefix + (local,))
        return full

    def _stmts(self, stmts: tuple[ir.Stmt, ...], scope: _Scope, current: str | None) -> str | None:
        for st in stmts:
            result = self._chain(st.expr, scope, current, st.span)
            if st.target is not None:
                if st.target in scope.env and st.target not in ("in",):
                    pass  # rebinding a name (h = h -> ...) is allowed, as in the residual example
                if st.target in scope.params:
                    self.sink.error("E206", f"'{st.target}' is a parameter of this block and cannot name a tensor",
                                    st.span)
                if result is not None:
                    scope.bind(st.target, result)
                    self.aliases.setdefault(result, st.target)
                scope.defined[st.target] = Span(st.span.line, st.span.col, st.span.line, st.span.col + len(st.target))
                scope.used.discard(st.target)
            current = result
        return current

    # ------------------------------------------------------------ expressions
    def _resolve(self, expr: ir.Expr, scope: _Scope) -> ir.Expr:
        """Substitute block parameters by the caller's expressions."""
        if isinstance(expr, ir.Ident) and expr.name in scope.params:
            return scope.params[expr.name]
        if isinstance(expr, ir.ListExpr):
            return replace(expr, items=tuple(self._resolve(i, scope) for i in expr.items))
        if isinstance(expr, ir.Call):
            return replace(expr, args=tuple(replace(a, value=self._resolve(a.value, scope)) for a in expr.args))
        if isinstance(expr, ir.Space):
            return replace(expr, options=tuple(self._resolve(o, scope) for o in expr.options))
        return expr

    def _is_tensor(self, expr: ir.Expr, scope: _Scope) -> bool:
        if isinstance(expr, ir.Ident):
            return expr.name in scope.env
        if isinstance(expr, ir.Add):
            return True
        if isinstance(expr, ir.Call):
            if expr.name == "concat":
                return True
            first = expr.positional[:1]
            return expr.name in catalog.activations and bool(first) and self._is_tensor(first[0], scope)
        if isinstance(expr, (ir.Chain,)):
            return self._is_tensor(expr.items[0], scope)
        if isinstance(expr, ir.Group):
            return self._is_tensor(expr.inner, scope)
        return False

    def _chain(self, expr: ir.Expr, scope: _Scope, current: str | None, stmt_span: Span) -> str | None:
        items = expr.items if isinstance(expr, ir.Chain) else (expr,)
        first, rest = items[0], items[1:]
        if self._is_tensor(first, scope):
            x = self._tensor(first, scope) or self._placeholder(scope, first.span, ())
        elif self._is_unknown_name(first, scope):
            self._undefined(first, scope)
            x = self._placeholder(scope, first.span, ())
        else:
            if current is None:
                self._no_current(first, scope)
                current = self._placeholder(scope, first.span, ())
            scope.used.update(scope.names_at.get(current, ()))
            x = self._apply(first, current, scope)
        for op in rest:
            if self._is_tensor(op, scope) and not isinstance(op, ir.Call):
                self.sink.error("E204", f"tensor '{_show(op)}' cannot follow `->`: only layers, activations and blocks can",
                                op.span, help="to combine tensors use `+` or concat(a, b)")
                x = self._placeholder(scope, op.span, (x,))
                continue
            x = self._apply(op, x, scope)
        return x

    def _is_unknown_name(self, expr: ir.Expr, scope: _Scope) -> bool:
        """A lower-case bare name that is no tensor, layer, activation, block or parameter: a
        mistyped tensor name (`hiden -> Dense(2)`), reported as undefined, not as a layer."""
        if not isinstance(expr, ir.Ident) or not expr.name[:1].islower():
            return False
        known = (scope.env, scope.params, self.blocks, catalog.layers, catalog.activations, catalog.losses,
                 catalog.metrics, catalog.optimizers)
        if any(expr.name in k for k in known):
            return False
        if expr.name == "in":  # a block's input, used outside a block
            return True
        # closer to an activation than to any tensor: a mistyped activation (E101), e.g. `relux`
        return suggest(expr.name, scope.env) is not None or suggest(expr.name, catalog.activations.spellings) is None

    def _placeholder(self, scope: _Scope, span: Span, inputs: tuple[str, ...]) -> str:
        """Stands for the result of an operation that was reported as wrong, so that checking
        goes on after it (arguments of later layers are still checked; shapes are unknown) and
        a name bound to it stays defined (no cascade of `not defined` errors)."""
        node = ir.Node(self._fresh(scope, "invalid"), "invalid", "invalid", {}, inputs, None, span, scope.prefix)
        return self._add(node)

    def _no_current(self, first: ir.Expr, scope: _Scope) -> None:
        names = ", ".join(dict.fromkeys(i.name for i in self.spec.inputs))
        if "," in names and not scope.prefix:
            self.sink.error("E208", "with several inputs, a chain must start from a named tensor",
                            first.span, help=f"start it with one of: {names} (e.g. `{self.spec.inputs[0].name} -> ...`)")
        elif isinstance(first, ir.Ident) and first.name not in catalog.layers and first.name not in catalog.activations \
                and first.name not in self.blocks:
            self._undefined(first, scope)

    def _undefined(self, ident: ir.Ident, scope: _Scope) -> None:
        if ident.name == "in" and not scope.prefix:
            first = self.spec.inputs[0].name if self.spec.inputs else "x"
            self.sink.error("E200", "`in` is defined only inside a block: it is the block's input", ident.span,
                            help=f"at the top level, start from an input, e.g. `{first} -> ...`")
            return
        pool = scope.env.keys()  # not copied: thousands of names, thousands of mistakes (a block's has `in`)
        hint = suggest(ident.name, pool) or \
            suggest(ident.name, catalog.layers.spellings + catalog.activations.spellings + list(self.blocks))
        listed = ", ".join(itertools.islice(pool, 20)) + (f" and {len(pool) - 20:,} more" if len(pool) > 20 else "")
        self.sink.error("E200", f"'{ident.name}' is not defined", ident.span,
                        help=hint or (f"defined tensors here: {listed}" if pool else None))

    def _tensor(self, expr: ir.Expr, scope: _Scope) -> str | None:
        """Evaluate a tensor expression: a name, a sum, concat(...), or activation(tensor)."""
        if isinstance(expr, ir.Ident):
            scope.used.add(expr.name)
            return scope.env[expr.name]
        if isinstance(expr, ir.Group):
            return self._tensor(expr.inner, scope)
        if isinstance(expr, ir.Chain):
            return self._chain(expr, scope, None, expr.span)
        if isinstance(expr, ir.Add):
            terms = [self._operand(t, scope) for t in expr.terms]
            return self._combine("add", terms, expr, scope)
        if isinstance(expr, ir.Call) and expr.name == "concat":
            if any(a.name is not None for a in expr.args):
                self.sink.error("E105", "concat takes tensors only, e.g. concat(a, b)", expr.span)
            if len(expr.args) < 2:
                self.sink.error("E106", "concat needs at least two tensors", expr.span, help="write concat(a, b)")
                return None
            terms = [self._operand(a.value, scope) for a in expr.args]
            return self._combine("concat", terms, expr, scope)
        assert isinstance(expr, ir.Call)  # activation applied as a function
        inner = self._operand(expr.positional[0], scope)
        extra = ir.Call(expr.name, tuple(a for a in expr.args if a is not expr.args[0]), expr.span, expr.name_span)
        return self._activation(extra, inner, scope) if inner is not None else None

    def _operand(self, expr: ir.Expr, scope: _Scope) -> str | None:
        if self._is_tensor(expr, scope):
            return self._tensor(expr, scope)
        if isinstance(expr, ir.Ident):
            self._undefined(expr, scope)
        else:
            self.sink.error("E205", "expected a tensor here (a name, a sum or concat(...))", expr.span,
                            help="layers go in a chain: `x -> Dense(8)`")
        return None

    def _combine(self, op: str, terms: list[str | None], expr: ir.Expr, scope: _Scope) -> str | None:
        if any(t is None for t in terms):
            return None
        types = [self.nodes[t].out for t in terms]
        out = None
        if all(t is not None for t in types):
            out = self._combine_type(op, types, expr)
        return self._add(ir.Node(self._fresh(scope, op), op, op, {}, tuple(terms), out, expr.span, scope.prefix))

    def _combine_type(self, op: str, types: list[ir.TensorType], expr: ir.Expr) -> ir.TensorType | None:
        first = types[0]
        if op == "add":
            for t in types[1:]:
                if t.shape != first.shape:
                    self.sink.error("E301", f"cannot add tensors of different shapes {first} and {t}", expr.span,
                                    help="both sides of `+` must have the same shape; project one with Dense or a 1x1 Conv2D")
                    return None
            return first
        rank = len(first.shape)
        axis = feature_axis(rank)
        for t in types[1:]:
            same_rank = len(t.shape) == rank
            others_match = same_rank and all(a == b for i, (a, b) in enumerate(zip(first.shape, t.shape)) if i != axis)
            if not others_match:
                self.sink.error("E302", f"cannot concatenate {first} and {t}: they must match on every axis but the "
                                "feature/channel axis", expr.span,
                                help="flatten or pool both to vectors first (Flatten(), GlobalAvgPool())")
                return None
        if any(t.dtype == "int" for t in types):
            self.sink.error("E304", "cannot concatenate integer token ids; embed them first", expr.span)
            return None
        dims = [t.shape[axis] for t in types]
        total = None if any(d is None for d in dims) else sum(dims)
        shape = list(first.shape)
        shape[axis] = total
        return ir.TensorType(tuple(shape))

    # ------------------------------------------------------------ applying operations
    def _apply(self, op: ir.Expr, x: str, scope: _Scope) -> str:
        """Apply one operation to the tensor `x`; a wrong one yields a placeholder (reported)."""
        result = self._apply_op(op, x, scope)
        return result if result is not None else self._placeholder(scope, op.span, (x,))

    def _apply_op(self, op: ir.Expr, x: str, scope: _Scope) -> str | None:
        if id(op) in self.refused:  # it would expand past MAX_GRAPH_NODES: reported (E209), not expanded
            scope.used.update(_names_in(op))
            return None
        op = self._resolve(op, scope) if isinstance(op, ir.Ident) and op.name in scope.params else op
        if isinstance(op, ir.Space):
            return self._apply_space(op, x, scope)
        if isinstance(op, ir.Ident):
            if op.name in scope.env:
                self.sink.error("E204", f"tensor '{op.name}' cannot follow `->`: only layers, activations and blocks can",
                                op.span, help="to combine tensors use `+` or concat(a, b)")
                return None
            return self._apply(ir.Call(op.name, (), op.span, op.span), x, scope)
        if isinstance(op, ir.Group):
            return self._chain_ops(op.inner, x, scope)
        if isinstance(op, ir.Chain):
            return self._chain_ops(op, x, scope)
        if isinstance(op, ir.Mul):
            return self._repeat(op, x, scope)
        if isinstance(op, ir.Call):
            return self._call(op, x, scope)
        self.sink.error("E205", f"expected a layer, an activation or a block here; received {_show(op)}", op.span,
                        help="e.g. `-> Dense(8)` or `-> relu`")
        return None

    def _chain_ops(self, expr: ir.Expr, x: str, scope: _Scope) -> str | None:
        items = expr.items if isinstance(expr, ir.Chain) else (expr,)
        for op in items:
            x = self._apply(op, x, scope)
        return x

    def _apply_space(self, space: ir.Space, x: str, scope: _Scope) -> str | None:
        if space.kind != "choice":
            self.sink.error("E404", f"`{space.kind}` cannot stand for a layer or an activation; use choice(...)",
                            space.span)
            return None
        start = len(self.order)
        result = self._apply(space.default, x, scope)
        self._mark_searched(start, "kind", space)
        for option in space.options[1:]:  # every alternative is checked; only the default stays in the graph
            mark, counters = len(self.order), dict(scope.counters)
            self._apply(option, x, scope)
            for name in self.order[mark:]:
                del self.nodes[name]
            del self.order[mark:]
            while self.marks and self.marks[-1][0] >= mark:  # marks of the nodes just dropped
                self.marks.pop()
            scope.counters = counters
        return result

    def _mark_searched(self, start: int, key: str, space: ir.Space) -> None:
        """The nodes from position `start` on were made under a search space (a repetition count,
        a choice of layers). Recorded as a range and applied once at the end (`_apply_marks`):
        marking node by node at every level cost nodes x nesting depth."""
        if start < len(self.order):
            self.marks.append((start, len(self.order), key, space))

    def _apply_marks(self) -> None:
        """node.searched[key] = the space of the outermost mark holding the node (the last made;
        marks are nested or apart). Each position is given each key once: a union-find skips the
        positions already given it."""
        given: dict[int, dict[str, ir.Space]] = {}
        for key in {m[2] for m in self.marks}:
            after = list(range(len(self.order) + 1))  # after[i]: the first position >= i not given `key`

            def free(i: int) -> int:
                root = i
                while after[root] != root:
                    root = after[root]
                while after[i] != root:
                    after[i], i = root, after[i]
                return root
            for start, end, k, space in reversed(self.marks):
                if k != key:
                    continue
                i = free(start)
                while i < end:
                    given.setdefault(i, {})[key] = space
                    after[i] = i + 1
                    i = free(i + 1)
        for i, spaces in given.items():
            node = self.nodes[self.order[i]]
            self.nodes[node.name] = replace(node, searched={**node.searched, **spaces})

    def _repeat(self, op: ir.Mul, x: str, scope: _Scope) -> str | None:
        count_expr = self._resolve(op.right, scope)
        space = count_expr if isinstance(count_expr, ir.Space) else None
        value = literal(count_expr, {}, "repeat")
        if isinstance(value, bool) or not isinstance(value, int):
            self.sink.error("E207", f"a repetition count must be a whole number; received {_show(count_expr)}",
                            op.right.span, help="write e.g. `Residual(16) * 3`")
            value = 0
        elif value < 1 or value > MAX_REPEAT:
            self.sink.error("E207", f"a repetition count must be between 1 and {MAX_REPEAT}; received {value}",
                            op.right.span, help="write e.g. `Residual(16) * 3`")
            value = 0
        if value == 0:  # still check what would be repeated, once
            self._apply(op.left, x, scope)
            return None
        start = len(self.order)
        for _ in range(value):
            x = self._apply(op.left, x, scope)
            if self.nodes[x].op == "invalid":
                break  # reported once; repeating it would only repeat the report
        if space is not None:
            self._mark_searched(start, "repeat", space)
        return x

    def _call(self, call: ir.Call, x: str, scope: _Scope) -> str | None:
        if call.name in self.blocks:
            return self._block(call, x, scope)
        entry = catalog.layers.get(call.name)
        if entry is not None:
            return self._layer(entry, call, x, scope)
        if call.name in catalog.activations:
            return self._activation(call, x, scope)
        if call.name == "concat":
            self.sink.error("E205", "concat combines named tensors and cannot follow `->`", call.span,
                            help="write `concat(a, b) -> ...` at the start of a statement")
            return None
        self._unknown_op(call)
        return None

    def _unknown_op(self, call: ir.Call) -> None:
        for registry, code in ((catalog.losses, "E102"), (catalog.optimizers, "E103"), (catalog.metrics, "E104")):
            if call.name in registry and call.name not in catalog.activations:
                self.sink.error("E100", f"'{call.name}' is a {registry.what}, not a layer or an activation",
                                call.name_span, help=f"put it in the `{'loss' if code == 'E102' else registry.what + 's' if code == 'E104' else 'optimizer'}` section")
                return
        layer_hint = suggest(call.name, catalog.layers.spellings + list(self.blocks))
        act_hint = suggest(call.name, catalog.activations.spellings)
        if act_hint and not layer_hint:
            self.sink.error("E101", f"unknown activation '{call.name}'", call.name_span, help=act_hint)
        else:
            self.sink.error("E100", f"unknown layer '{call.name}'", call.name_span,
                            help=layer_hint or "see `docs/language.md` for the catalog of layers")

    def _layer(self, entry: catalog.LayerEntry, call: ir.Call, x: str, scope: _Scope) -> str | None:
        where = entry.name
        bound = bind(entry.params, call, where, self.sink, lambda e: self._resolve(e, scope))
        values = dict(bound.values)
        kind, searched = entry.name, dict(bound.searched)
        if entry.name == "Bidirectional":
            inner = self._inner_layer(values.get("layer"), call, scope)
            if inner is None:
                return None
            entry, inner_bound = inner
            kind = entry.name
            values = dict(inner_bound.values, bidirectional=True)
            searched.update(inner_bound.searched)
        activation = values.pop("activation", None) if entry.activation_param else None
        if any(values[p.name] is None and (p.required or p.default is not None)
               for p in entry.params if p.name in values):
            # an argument was wrong: reported already; the shape cannot be inferred, but a
            # written `activation=` is still checked
            name = self._placeholder(scope, call.span, (x,))
        else:
            name = self._fresh(scope, snake(kind))
            out, params = self._infer(entry, values, x, call, name)
            node = ir.Node(name, "layer", kind, values, (x,), out, call.span, scope.prefix, searched,
                           params[0] + params[1], params[1])
            self._add(node)
        if activation is None:
            return name
        act_call = self._as_activation(activation, bound, call)
        return self._activation(act_call, name, scope) if act_call is not None else None

    def _as_activation(self, value: Any, bound: Bound, call: ir.Call) -> ir.Call | None:
        sp = bound.spans.get("activation", call.span)
        if isinstance(value, str):
            return ir.Call(value, (), sp, sp)
        if isinstance(value, ir.Call):
            return value
        self.sink.error("E107", f"`activation` of {call.name} must be an activation name, e.g. relu", sp)
        return None

    def _inner_layer(self, value: Any, call: ir.Call, scope: _Scope):
        rnn = ("SimpleRNN", "LSTM", "GRU")
        if value is None:
            return None  # missing: reported (E106)
        if isinstance(value, str):
            value = ir.Call(value, (), call.span, call.span)
        entry = catalog.layers.get(value.name) if isinstance(value, ir.Call) else None
        if entry is None or entry.name not in rnn:
            self.sink.error("E107", "Bidirectional wraps a recurrent layer: SimpleRNN, LSTM or GRU",
                            getattr(value, "span", call.span), help="write e.g. Bidirectional(LSTM(64))")
            return None
        inner = bind(entry.params, value, entry.name, self.sink, lambda e: self._resolve(e, scope))
        if any(v is None and p.required for p, v in ((p, inner.values[p.name]) for p in entry.params)):
            return None
        return entry, inner

    def _infer(self, entry: catalog.LayerEntry, values: dict, x: str, call: ir.Call, name: str):
        in_type = self.nodes[x].out
        if in_type is None:
            return None, (0, 0)
        try:
            out = entry.shape(values, [in_type])
            total, frozen = entry.count(values, [in_type])
        except ShapeError as err:
            self.sink.error(err.code, err.message, call.span, help=err.help)
            return None, (0, 0)
        self._check_size(out, call.span, f"{entry.name} ({name})")
        return out, (total, frozen)

    def _check_size(self, t: ir.TensorType, span: Span, what: str) -> None:
        n = t.numel
        if n is not None and n > MAX_ELEMENTS:
            self.sink.error("E307", f"{what} has {count_text(n)} elements per example: it would need "
                            f"{memory_text(n * 4)} of memory in float32 for a batch of one",
                            span, help="reduce the sizes; nothing this large fits in a device's memory")

    def _activation(self, call: ir.Call, x: str, scope: _Scope) -> str | None:
        entry = catalog.activations.get(call.name)
        if entry is None:
            self.sink.error("E101", f"unknown activation '{call.name}'", call.name_span,
                            help=suggest(call.name, catalog.activations.spellings))
            return None
        bound = bind(entry.params, call, entry.name, self.sink, lambda e: self._resolve(e, scope))
        if any(v is None and p.required for p, v in ((p, bound.values[p.name]) for p in entry.params)):
            return None
        values = dict(bound.values)
        if entry.name == "scaled_tanh" and values["a"] is not None and values["b"] is not None and values["a"] >= values["b"]:
            self.sink.error("E108", f"scaled_tanh needs a < b; received a={values['a']}, b={values['b']}", call.span)
        in_type = self.nodes[x].out
        if in_type is not None and in_type.dtype == "int":
            self.sink.error("E304", f"activation {entry.name} expects float values; received integer token ids {in_type}",
                            call.span, help="embed integer tokens first, e.g. Embedding(vocab=..., dim=...)")
            in_type = None
        node = ir.Node(self._fresh(scope, entry.name), "activation", entry.name, values, (x,), in_type,
                       call.span, scope.prefix, dict(bound.searched))
        return self._add(node)

    def _block(self, call: ir.Call, x: str, scope: _Scope) -> str | None:
        block = self.blocks[call.name]
        self.instantiated.add(block.name)
        if block.name in scope.block_stack:
            return None  # a cycle: reported once by _check_recursion
        if len(scope.block_stack) >= MAX_BLOCK_DEPTH:  # each level costs stack and a longer node name
            self.sink.error("E004", f"blocks use blocks more than {MAX_BLOCK_DEPTH} deep", call.span,
                            help="flatten the nesting of blocks")
            return None
        bound = self._bind_block_args(block, call, scope)
        if bound is None:
            return None
        instance = self._fresh(scope, snake(block.name))
        inner = _Scope(tuple(instance.split(".")), {"in": x}, bound, scope.block_stack + (block.name,))
        inner.defined = {}
        mark = len(self.sink.items)
        result = self._stmts(block.body, inner, x)
        for name, sp in inner.defined.items():
            if name not in inner.used and inner.env.get(name) != result:
                self.sink.warning("W201", f"tensor '{name}' is never used in block '{block.name}'", sp)
        if not block.body:
            self.sink.error("E011", f"block '{block.name}' has an empty body", block.span)
        self._note_use(mark, block, call)
        return result

    def _note_use(self, mark: int, block: ir.Block, call: ir.Call) -> None:
        """Diagnostics found in a block's body get a note naming the use that produced them
        (the arguments may be the cause); one said identically by several uses is kept once."""
        found = self.sink.truncate(mark)
        note = f"in the use of block '{block.name}' at {call.span.line}:{call.span.col}"
        for d in found:
            nested = any(n.startswith("in the use of block") for n in d.notes)
            if nested or block.span.line <= d.span.line <= block.span.end_line:
                d = replace(d, notes=d.notes + (note,))
            if not self.sink.has_like(d):
                self.sink.add(d)

    def _bind_block_args(self, block: ir.Block, call: ir.Call, scope: _Scope) -> dict[str, ir.Expr] | None:
        params = tuple(Param(p, "any") for p in block.params)
        sink = Sink()
        bind(params, call, f"block {block.name}", sink, lambda e: self._resolve(e, scope))
        for d in sink.items:
            self.sink.add(replace(d, code="E203", message=d.message.replace(" (any)", ""))
                          if d.code in ("E106", "E110") else d)
        if sink.has_errors:
            return None
        exprs: dict[str, ir.Expr] = {}
        for arg, param in zip([a for a in call.args if a.name is None], block.params):
            exprs[param] = self._resolve(arg.value, scope)
        for arg in call.args:
            if arg.name is not None:
                exprs[arg.name] = self._resolve(arg.value, scope)
        return exprs


def _show(expr: ir.Expr) -> str:
    if isinstance(expr, ir.Ident):
        return expr.name
    if isinstance(expr, ir.Num):
        return str(expr.value)
    if isinstance(expr, ir.Call):
        return f"{expr.name}(...)"
    if isinstance(expr, ir.Space):
        return f"{expr.kind}(...)"
    if isinstance(expr, ir.Str):
        return f'"{expr.value}"'
    return type(expr).__name__.lower()


# ---------------------------------------------------------------- sections
def _output_activation(graph: ir.Graph) -> str | None:
    node = graph.output_node
    return node.kind if node is not None and node.op == "activation" else None


def _check_loss(spec: ir.Spec, graph: ir.Graph, sink: Sink) -> tuple[tuple, Task | None]:
    terms = []
    for term in spec.loss:
        entry = catalog.losses.get(term.loss.name)
        if entry is None:
            sink.error("E102", f"unknown loss '{term.loss.name}'", term.loss.name_span,
                       help=suggest(term.loss.name, catalog.losses.spellings) or
                       f"known losses: {', '.join(e.name for e in catalog.losses)}")
            continue
        bound = bind(entry.params, term.loss, entry.name, sink)
        terms.append((term.weight, entry, bound.values, term))
    if not spec.loss and "loss" not in spec.sections:
        sink.warning("W012", "the model has no `loss`: it can be checked and drawn, not trained",
                     header_span(spec), help="add e.g. `loss categorical_crossentropy`")
    out = graph.output_node
    if not terms or out is None or out.out is None:
        return tuple((w, e.name, v) for w, e, v, _ in terms), None
    task = None
    for weight, entry, _, term in terms:
        t = _task_for(entry, out, graph, term, sink)
        task = task or t
    return tuple((w, e.name, v) for w, e, v, _ in terms), task


def _task_for(entry, out: ir.Node, graph: ir.Graph, term: ir.LossTerm, sink: Sink) -> Task | None:
    shape = out.out.shape
    act = _output_activation(graph)
    feat = shape[feature_axis(len(shape))] if shape else None
    traits = entry.traits
    sp = term.loss.span
    if "distribution" in traits and act != "softmax":
        sink.error("E400", f"{entry.name} compares probability distributions; the output ends in {act or 'no activation'}",
                   sp, help="end the network with `-> softmax`")
        return None
    if "multiclass" in traits:
        if act in ("sigmoid", "step", "sign", "tanh", "scaled_tanh"):
            sink.error("E400", f"{entry.name} needs class scores (softmax or logits); the output ends in {act}", sp,
                       help="end with `-> softmax` (or no activation), or use binary_crossentropy for a sigmoid output")
            return None
        if feat is not None and feat < 2:
            sink.error("E400", f"{entry.name} needs at least 2 classes; the output {out.out} has {feat}", sp,
                       help="use binary_crossentropy with `Dense(1) -> sigmoid` for two classes")
            return None
        return Task("multiclass", feat, act)
    if "binary" in traits:
        if act == "softmax" and feat is not None and feat > 1:
            sink.error("E400", f"{entry.name} expects independent probabilities in [0, 1]; the output is a {feat}-way softmax",
                       sp, help="use categorical_crossentropy for one-of-N classes, or end with `-> sigmoid`")
            return None
        if act not in ("sigmoid", "step"):
            sink.error("E400", f"{entry.name} expects a sigmoid output in [0, 1]; the output ends in {act or 'no activation'}",
                       sp, help="end the network with `-> sigmoid`")
            return None
        return Task("binary", feat, act)
    if act == "softmax" and "regression" in traits:
        return Task("multiclass", feat, act)
    if act == "step":
        return Task("binary", feat, act)
    return Task("regression", feat, act)


def _check_metrics(spec: ir.Spec, task: Task | None, sink: Sink) -> tuple:
    out = []
    for call in spec.metrics:
        entry = catalog.metrics.get(call.name)
        if entry is None:
            sink.error("E104", f"unknown metric '{call.name}'", call.name_span,
                       help=suggest(call.name, catalog.metrics.spellings) or
                       f"known metrics: {', '.join(e.name for e in catalog.metrics)}")
            continue
        bound = bind(entry.params, call, entry.name, sink)
        out.append((entry.name, bound.values))
        if task is None:
            continue
        if task.kind not in entry.traits:
            sink.error("E401", f"metric {entry.name} does not apply to a {task.kind} task", call.span,
                       help=_metric_hint(task))
        elif entry.name == "top_k_accuracy" and bound.values.get("k") and task.classes and bound.values["k"] >= task.classes:
            sink.error("E401", f"top_k_accuracy with k={bound.values['k']} is always 1 with {task.classes} classes",
                       call.span, help=f"choose k < {task.classes}")
    return tuple(out)


def _metric_hint(task: Task) -> str:
    fitting = [e.name for e in catalog.metrics if task.kind in e.traits]
    return f"metrics for a {task.kind} task: {', '.join(fitting)}"


def _check_optimizer(spec: ir.Spec, graph: ir.Graph, sink: Sink):
    call = spec.optimizer
    if call is None:
        return None
    entry = catalog.optimizers.get(call.name)
    if entry is None:
        sink.error("E103", f"unknown optimizer '{call.name}'", call.name_span,
                   help=suggest(call.name, catalog.optimizers.spellings) or
                   f"known optimizers: {', '.join(e.name for e in catalog.optimizers)}")
        return None
    bound = bind(entry.params, call, entry.name, sink)
    layers = [n for n in graph.nodes if n.op != "input"]
    if "no_gradient" in entry.traits:
        kinds = [n.kind for n in layers]
        already_wrong = any(n.op == "invalid" for n in layers)  # reported; the kinds are not known
        if not already_wrong and (kinds != ["Dense", "step"] or len(graph.inputs) != 1):
            sink.error("E402", "the Perceptron rule trains a single Dense layer followed by `step`; "
                       f"this network has {', '.join(kinds) or 'no layers'}", call.span,
                       help="write `Dense(1) -> step`, or use a gradient optimizer such as SGD or Adam")
    else:
        for n in layers:
            if n.op == "activation" and n.kind in ("step", "sign"):
                sink.warning("W403", f"`{n.kind}` has a zero gradient almost everywhere: {entry.name} cannot train "
                             "the layers before it", n.span,
                             help="use sigmoid or tanh, or the Perceptron optimizer for a single Dense -> step")
    return entry.name, bound.values


def _check_settings(settings: tuple[ir.Setting, ...], schema: tuple[Param, ...], section: str,
                    sink: Sink) -> dict[str, Any]:
    by_name = {p.name: p for p in schema}
    values: dict[str, Any] = {p.name: p.default for p in schema}
    seen: set[str] = set()
    for st in settings:
        param = by_name.get(st.name)
        if param is None:
            sink.error("E016", f"unknown {section} setting '{st.name}'", st.span,
                       help=suggest(st.name, by_name) or f"{section} settings: {', '.join(by_name)}")
            continue
        if st.name in seen:
            sink.error("E010", f"{section} setting '{st.name}' is written twice", st.span)
            continue
        seen.add(st.name)
        if st.name == "objective":
            values["objective"] = _objective(st, sink)
            continue
        if len(st.values) != 1:
            sink.error("E017", f"{section} setting '{st.name}' takes one value; received {len(st.values)}", st.span,
                       help=f"write e.g. `{st.name} {_example(param)}`")
            continue
        expr = st.values[0]
        if st.name == "data":
            values["data"] = data_source(expr, sink)
            continue
        if st.name == "schedule":
            values["schedule"] = _schedule(expr, sink)
            continue
        if st.name == "class_weights":
            values["class_weights"] = _class_weights(expr, sink)
            continue
        raw = literal(expr, {}, st.name)
        shown = expr.default if isinstance(expr, ir.Space) else expr
        values[st.name] = coerce(param, raw, f"the {section} section", expr.span, sink, shown)
    return values


def _example(param: Param) -> str:
    return {"int": "10", "float": "0.1", "bool": "true", "enum": param.choices[0] if param.choices else "x",
            "int|enum": "32"}.get(param.type, "...")


def _objective(st: ir.Setting, sink: Sink):
    words = [literal(v, {}, "objective") for v in st.values]
    if len(words) == 1 and isinstance(words[0], str) and words[0] not in ("minimize", "maximize"):
        words = ["minimize" if "loss" in words[0] else "maximize", words[0]]
    if len(words) != 2 or words[0] not in ("minimize", "maximize") or not isinstance(words[1], str):
        sink.error("E017", "objective is `minimize METRIC` or `maximize METRIC`", st.span,
                   help="e.g. `objective maximize val_auc`")
        return None
    return tuple(words)


def data_source(expr: ir.Expr, sink: Sink):
    """A data source as the spec writes it (a name, a call, or a path string), bound against the
    data-source catalog: (name, arguments), or None after an error in the sink."""
    if isinstance(expr, (ir.Dotted, ir.Ident)):
        call = ir.Call(expr.name, (), expr.span, expr.span)
    elif isinstance(expr, ir.Call):
        call = expr
    elif isinstance(expr, ir.Str):
        path = expr.value
        kind = "npz" if path.endswith(".npz") else "csv"
        call = ir.Call(kind, (ir.Arg(None, expr, expr.span),), expr.span, expr.span)
    else:
        sink.error("E112", "expected a data source", expr.span,
                   help="e.g. sklearn.iris, logic.xor, synthetic(n=1000), csv(\"data.csv\", target=\"y\")")
        return None
    entry = data_sources.get(call.name)
    if entry is None:
        sink.error("E112", f"unknown data source '{call.name}'", call.name_span,
                   help=suggest(call.name, data_sources.spellings) or f"known sources: {', '.join(data_sources.spellings)}")
        return None
    bound = bind(entry.params, call, f"data source {entry.name}", sink)
    return entry.name, dict(bound.values)


def _schedule(expr: ir.Expr, sink: Sink):
    call = ir.Call(expr.name, (), expr.span, expr.span) if isinstance(expr, ir.Ident) else expr
    if not isinstance(call, ir.Call) or call.name not in schedules:
        name = getattr(call, "name", "?")
        sink.error("E016", f"unknown learning-rate schedule '{name}'", expr.span,
                   help=suggest(str(name), schedules.spellings) or f"schedules: {', '.join(schedules.spellings)}")
        return None
    entry = schedules.get(call.name)
    return entry.name, dict(bind(entry.params, call, f"schedule {entry.name}", sink).values)


def _class_weights(expr: ir.Expr, sink: Sink):
    value = literal(expr, {}, "class_weights")
    if value == "balanced":
        return "balanced"
    if isinstance(value, list) and value and all(isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in value):
        return [float(v) for v in value]
    sink.error("E017", "class_weights is `balanced` or a list of non-negative weights, one per class", expr.span)
    return None


def _check_cross(checked_task: Task | None, train: dict, graph: ir.Graph, spec: ir.Spec, sink: Sink) -> None:
    weights = train.get("class_weights")
    if isinstance(weights, list) and checked_task and checked_task.kind == "multiclass" and checked_task.classes \
            and len(weights) != checked_task.classes:
        st = spec.train_setting("class_weights")
        sink.error("E017", f"class_weights has {len(weights)} weights for {checked_task.classes} classes",
                   st.span if st else spec.span)
    if train.get("folds") and train.get("validation"):
        st = spec.train_setting("folds")
        sink.error("E020", f"`folds {train['folds']}` and `validation {train['validation']}` both choose the "
                   "validation rows", st.span if st else spec.span,
                   help=f"keep one: with folds, each of the {train['folds']} runs validates on its own fold")
    _check_memory(train, graph, spec, sink)


def _check_memory(train: dict, graph: ir.Graph, spec: ir.Spec, sink: Sink) -> None:
    """E307 for what no single device holds, W307 for more than this machine's memory: the one
    decision, memory.memory_problem, that `nnspec train` takes again (and refuses either) for the
    batch and the device it really uses. A model with a loss is counted for one training step."""
    batch = None
    if spec.loss:
        batch = train.get("batch_size")
        batch = batch if isinstance(batch, int) and not isinstance(batch, bool) else 1
    problem = memory.memory_problem(graph, batch, memory.machine_memory())
    if problem is None:
        return
    st = spec.train_setting("batch_size")
    if problem.code == "E307":
        span = header_span(spec) if problem.what == "weights" or st is None else st.span
    elif problem.what == "training" and st is not None:
        span = st.span
    else:  # the layer with the most parameters, else the layers section
        biggest = max((n for n in graph.nodes if n.params), key=lambda n: n.params, default=None)
        where = spec.sections.get("layers")
        span = biggest.span if biggest is not None and problem.what == "weights" else \
            Span(where.line, where.col, where.line, where.col + len("layers")) if where else header_span(spec)
    sink.add(Diagnostic("error" if problem.code == "E307" else "warning", problem.code, problem.message, span,
                        (), problem.help))


def check_data_size(train: dict, graph, spec, sink) -> None:
    """`nnspec check`: warn (W113) when the spec's synthetic data would not fit in this machine's
    memory; `nnspec train` then refuses it with the numbers, before allocating anything."""
    source = train.get("data")
    if not source or source[0] != "synthetic":
        return
    n = source[1].get("n")
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        return
    nodes = [graph.node(name) for name in graph.inputs]
    if graph.output_node is None or graph.output_node.out is None or any(nd.out is None for nd in nodes):
        return
    outputs = 1
    for d in graph.output_node.out.shape:
        outputs *= d or 1
    need = synthetic_bytes([(nd.out.shape, nd.out.dtype) for nd in nodes], outputs, n)
    total = memory.machine_memory()
    if total is None or need <= total:
        return
    setting = spec.train_setting("data")
    span = setting.span if setting is not None else spec.span
    call = setting.values[0] if setting is not None and setting.values else None
    for i, arg in enumerate(getattr(call, "args", ())):
        if arg.name == "n" or (arg.name is None and i == 0):
            span = arg.span
    sink.warning("W113", f"synthetic(n={n}) would make {memory_text(need)} of data; this machine has "
                 f"{memory_text(total)} of memory, so `nnspec train` will refuse it here",
                 span, help="use a smaller n: synthetic data is made whole, in memory")


def check_spec(spec: ir.Spec, sink: Sink) -> Checked:
    graph = Elaborator(spec, sink).run()
    loss, task = _check_loss(spec, graph, sink)
    metrics = _check_metrics(spec, task, sink)
    optimizer = _check_optimizer(spec, graph, sink)
    train = _check_settings(spec.train, TRAIN_SETTINGS, "train", sink)
    search = _check_settings(spec.search, SEARCH_SETTINGS, "search", sink)
    _check_cross(task, train, graph, spec, sink)
    check_data_size(train, graph, spec, sink)  # W113: synthetic data beyond this machine's memory
    return Checked(spec, graph, task, loss, optimizer, metrics, train, search, _without_cascades(sink.sorted()))


def _without_cascades(diags: list[Diagnostic]) -> tuple[Diagnostic, ...]:
    """Drop value errors about a search space that is itself reported as malformed (E404):
    the stand-in value lowering gave it (`choice()` -> 0) is not the user's."""
    bad = sorted(((d.span.line, d.span.col), (d.span.end_line, d.span.end_col)) for d in diags if d.code == "E404")
    if not bad:
        return tuple(diags)
    starts = [start for start, _ in bad]
    furthest = list(itertools.accumulate((end for _, end in bad), max))  # of the spaces starting up to here

    def covered(sp: Span) -> bool:  # by an E404's span: one starting at or before it, ending at or after it
        i = bisect.bisect_right(starts, (sp.line, sp.col))
        return i > 0 and furthest[i - 1] >= (sp.end_line, sp.end_col)
    return tuple(d for d in diags if not (d.code in ("E107", "E108", "E109") and covered(d.span)))

