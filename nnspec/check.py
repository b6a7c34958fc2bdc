"""The checker: names, arguments, shape inference and cross-checks over a spec IR.

It elaborates the spec into the graph IR (blocks and repetitions expanded, every layer
instance with a unique readable name and an inferred output type) and collects ALL
diagnostics in one pass; it never stops at the first problem and never imports torch.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass, replace
from typing import Any, Mapping

from . import catalog, ir
from .catalog.base import ShapeError, feature_axis
from .catalog.schema import Bound, Param, bind, coerce, literal
from .catalog.settings import DATA_SOURCES, SCHEDULES, SEARCH_SETTINGS, TRAIN_SETTINGS
from .diagnostics import Diagnostic, Sink, Span, suggest
from .limits import check_data_size

MAX_ELEMENTS = 2**31  # a single activation larger than this cannot be trained on one device
MAX_PARAM_BYTES = 32 * 2**30
MAX_TRAIN_BYTES = 160 * 2**30  # above the largest single accelerator (141 GiB on an H200)
MAX_REPEAT = 10_000
MAX_BLOCK_DEPTH = 256  # blocks using blocks; 200-deep nesting must check

data_sources = catalog.Registry("data source", DATA_SOURCES)
schedules = catalog.Registry("schedule", SCHEDULES)


@dataclass(frozen=True)
class Task:
    """What the network predicts, as the loss and the output layer say."""

    kind: str  # "multiclass" | "binary" | "regression"
    classes: int | None  # number of classes (multiclass) or outputs
    output_activation: str | None  # the activation that ends the network, if any


@dataclass(frozen=True)
class Checked:
    spec: ir.Spec
    graph: ir.Graph
    task: Task | None
    loss: tuple[tuple[float, str, Mapping[str, Any]], ...]  # (weight, canonical loss, args)
    optimizer: tuple[str, Mapping[str, Any]] | None
    metrics: tuple[tuple[str, Mapping[str, Any]], ...]
    train: Mapping[str, Any]
    search: Mapping[str, Any]
    diagnostics: tuple[Diagnostic, ...]

    @property
    def ok(self) -> bool:
        return not any(d.is_error for d in self.diagnostics)


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
            state[root] = "active"
            while stack:
                step = next(stack[-1], None)
                if step is None:
                    state[path.pop()] = "done"
                    stack.pop()
                    continue
                callee, span = step
                if state.get(callee) == "active":
                    cycle = path[path.index(callee):] + [callee]
                    self.sink.error("E202", f"block '{callee}' uses itself (recursion through {' -> '.join(cycle)})",
                                    span, help="blocks cannot be recursive; repeat with `Block(...) * n` instead")
                elif callee not in state:
                    state[callee] = "active"
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
        nodes = tuple(self._with_alias(self.nodes[n]) for n in self.order)
        return ir.Graph(nodes, tuple(i.name for i in self.spec.inputs if i.name in self.nodes), out)

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
                    scope.env[st.target] = result
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
            scope.used.update(k for k, v in scope.env.items() if v == current)
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
        pool = list(scope.env) + (["in"] if scope.prefix else [])
        hint = suggest(ident.name, pool) or \
            suggest(ident.name, catalog.layers.spellings + catalog.activations.spellings + list(self.blocks))
        self.sink.error("E200", f"'{ident.name}' is not defined", ident.span,
                        help=hint or (f"defined tensors here: {', '.join(pool)}" if pool else None))

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
            scope.counters = counters
        return result

    def _mark_searched(self, start: int, key: str, space: ir.Space) -> None:
        for name in self.order[start:]:
            node = self.nodes[name]
            self.nodes[name] = replace(node, searched={**node.searched, key: space})

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
        found = self.sink.items[mark:]
        del self.sink.items[mark:]
        note = f"in the use of block '{block.name}' at {call.span.line}:{call.span.col}"
        for d in found:
            nested = any(n.startswith("in the use of block") for n in d.notes)
            if nested or block.span.line <= d.span.line <= block.span.end_line:
                d = replace(d, notes=d.notes + (note,))
            if not any((e.code, e.message, e.span) == (d.code, d.message, d.span) for e in self.sink.items):
                self.sink.items.append(d)

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
    params_bytes = graph.total_params * 4
    if params_bytes > MAX_PARAM_BYTES:
        sink.error("E307", f"the model has {count_text(graph.total_params)} parameters: it would need "
                   f"{memory_text(params_bytes)} of memory for the weights alone in float32",
                   header_span(spec), help="reduce layer sizes; this cannot be allocated")
    elif spec.loss:
        _check_training_memory(train, graph, spec, sink)


def _check_training_memory(train: dict, graph: ir.Graph, spec: ir.Spec, sink: Sink) -> None:
    """A rough lower bound of one training step's memory, so that absurd sizes fail here, not in torch.

    Every node's output is kept for the backward pass and gets a gradient (2 values per element);
    weights need themselves, their gradient and up to two optimizer moments (4 values).
    """
    batch = train.get("batch_size")
    batch = batch if isinstance(batch, int) and not isinstance(batch, bool) else 1
    problem = training_memory_problem(graph, batch)
    if problem is not None:
        st = spec.train_setting("batch_size")
        sink.error("E307", problem, st.span if st else header_span(spec),
                   help=f"more than any single device holds ({memory_text(MAX_TRAIN_BYTES)} is the limit here): "
                        "reduce the input and layer sizes or the batch_size")


def training_memory_problem(graph: ir.Graph, batch: int) -> str | None:
    """Why one training step of `batch` examples cannot fit in memory, or None; `nnspec train`
    asks again when --batch-size (or batch_size full) changes the batch."""
    per_example = sum(n.out.numel or 0 for n in graph.nodes if n.out is not None)
    activations = 2 * 4 * batch * per_example
    weights = 4 * 4 * graph.total_params
    if activations + weights <= MAX_TRAIN_BYTES:
        return None
    return (f"training one batch of {batch} would need at least {memory_text(activations + weights)} "
            f"of memory ({memory_text(activations)} for activations and their gradients, "
            f"{memory_text(weights)} for weights, gradients and optimizer state)")


def count_text(n: int) -> str:
    """1,234,567 for counts a reader can take in; 'about 10^400' beyond (and no 4300-digit str())."""
    if n < 10**18:
        return f"{n:,}"
    return f"about 10^{int((n.bit_length() - 1) * 0.30103)}"


def memory_text(nbytes: int) -> str:
    """Bytes in binary units (GiB, TiB...), computed on integers so 10^400 bytes cannot overflow."""
    units = ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")
    scale = 0
    while scale < len(units) - 1 and nbytes >= 1024 ** (scale + 1):
        scale += 1
    if nbytes >= 1024 ** (len(units) - 1) * 1024:
        return f"about 2^{nbytes.bit_length() - 1} bytes"
    if scale == 0:
        return f"{nbytes} bytes"
    return f"{nbytes / 1024 ** scale:,.1f} {units[scale]}"


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
    bad = [d.span for d in diags if d.code == "E404"]

    def covers(outer: Span, inner: Span) -> bool:
        return (outer.line, outer.col) <= (inner.line, inner.col) and \
            (inner.end_line, inner.end_col) <= (outer.end_line, outer.end_col)
    return tuple(d for d in diags if not (d.code in ("E107", "E108", "E109") and any(covers(d.span, b) for b in bad)))

