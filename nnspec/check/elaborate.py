"""Elaboration: the spec's layers section (and the blocks it uses) into the graph IR.

Blocks and repetitions are expanded, every layer instance gets a unique readable name
(`res_block_2.conv2_d_1`) and an inferred output type; every problem becomes a diagnostic and a
placeholder node, so that checking goes on after it. What the layers section expands to is
counted before expanding it (expansion.py: E209 past the limit).
"""
from __future__ import annotations

import itertools
from dataclasses import replace
from typing import Any, Mapping

from .. import catalog, ir
from ..catalog.base import ShapeError, feature_axis
from ..catalog.layers import TRAINABLE
from ..catalog.schema import Bound, Param, bind, literal
from ..diagnostics import Diagnostic, Sink, Span, suggest
from .budget import check_elements
from .common import (MAX_BLOCK_DEPTH, MAX_REPEAT, header_span, names_in, show, snake, subexpressions,
                     tensor_like)
from .expansion import MAX_GRAPH_NODES, Expansion


class Scope:
    """One level of elaboration: the top level, or one block instance."""

    def __init__(self, prefix: tuple[str, ...], env: dict[str, str], params: Mapping[str, ir.Expr],
                 block_stack: tuple[str, ...]):
        self.prefix = prefix
        self.env = env  # tensor name -> node name
        self.params = params  # block parameter -> the caller's expression
        self.block_stack = block_stack
        self.frozen = False  # inside a block use written with trainable=false: every layer is frozen
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


def _layer_in_other_case(name: str) -> catalog.LayerEntry | None:
    """The catalog layer whose name is `name` in other letter case (`conv2d`: Conv2D), or None."""
    spelled = {s.lower(): s for s in catalog.layers.spellings}.get(name.lower())
    return catalog.layers.get(spelled) if spelled else None


class Elaborator:
    def __init__(self, spec: ir.Spec, sink: Sink, max_nodes: int = MAX_GRAPH_NODES):
        self.spec = spec
        self.max_nodes = max_nodes  # what the layers section may expand to (E209)
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
    def block_calls(self, block: ir.Block) -> list[tuple[str, Span]]:
        """The blocks a block's body uses, with the span of each use, in source order."""
        found = [(e.name, e.span) for st in block.body for e in subexpressions(st.expr)
                 if isinstance(e, (ir.Call, ir.Ident)) and e.name in self.blocks]
        return sorted(found, key=lambda f: (f[1].line, f[1].col))

    def _check_recursion(self) -> None:
        """Report every cycle among blocks once, at the use that closes it, used or not."""
        state: dict[str, str] = {}  # "active" while on the path, "done" after
        for root in self.blocks:
            if root in state:
                continue
            path, stack = [root], [iter(self.block_calls(self.blocks[root]))]
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
                    stack.append(iter(self.block_calls(self.blocks[callee])))

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
                check_elements(t, inp.span, f"input '{inp.name}'", self.sink)
            self._add(ir.Node(inp.name, "input", "input", {}, (), t, inp.span), named=True)
            env[inp.name] = inp.name
        if not self.spec.inputs:
            self.sink.error("E011", "the model declares no input", header_span(self.spec),
                            help="declare one, e.g. `input x: [4]` (shape without the batch dimension)")
        if not self.spec.layers:
            where = self.spec.sections.get("layers", header_span(self.spec))
            self.sink.error("E011", "the model has no layers", where,
                            help="add a `layers { ... }` section, e.g. layers { Dense(1) }")
        self.refused = Expansion(self, self.max_nodes).plan(self.spec.layers, env)  # before expanding anything
        for expr, diag in self.refused.values():
            self.sink.add(diag)
            self._mark_used_blocks(expr)
        top = Scope((), env, {}, ())
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
        todo = [name for name in names_in(expr) if name in self.blocks]
        while todo:
            name = todo.pop()
            if name not in self.instantiated:
                self.instantiated.add(name)
                todo.extend(callee for callee, _ in self.block_calls(self.blocks[name]))

    def _with_alias(self, node: ir.Node) -> ir.Node:
        alias = self.aliases.get(node.name)
        return node if node.alias == alias else replace(node, alias=alias)  # most nodes have none

    def _add(self, node: ir.Node, named: bool = False) -> str:
        self.nodes[node.name] = node
        self.order.append(node.name)
        return node.name

    def _fresh(self, scope: Scope, base: str) -> str:
        scope.counters[base] = scope.counters.get(base, 0) + 1
        local = f"{base}_{scope.counters[base]}"
        full = ".".join(scope.prefix + (local,))
        while full in self.nodes:  # a tensor or input already holds this name
            scope.counters[base] += 1
            local = f"{base}_{scope.counters[base]}"
            full = ".".join(scope.prefix + (local,))
        return full

    def _stmts(self, stmts: tuple[ir.Stmt, ...], scope: Scope, current: str | None) -> str | None:
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
    def _resolve(self, expr: ir.Expr, scope: Scope) -> ir.Expr:
        return self.substitute(expr, scope.params)

    def substitute(self, expr: ir.Expr, params: Mapping[str, ir.Expr]) -> ir.Expr:
        """Substitute block parameters by the caller's expressions."""
        if isinstance(expr, ir.Ident) and expr.name in params:
            return params[expr.name]
        if isinstance(expr, ir.ListExpr):
            return replace(expr, items=tuple(self.substitute(i, params) for i in expr.items))
        if isinstance(expr, ir.Call):
            return replace(expr, args=tuple(replace(a, value=self.substitute(a.value, params)) for a in expr.args))
        if isinstance(expr, ir.Space):
            return replace(expr, options=tuple(self.substitute(o, params) for o in expr.options))
        return expr

    def _is_tensor(self, expr: ir.Expr, scope: Scope) -> bool:
        return tensor_like(expr, scope.env)

    def _chain(self, expr: ir.Expr, scope: Scope, current: str | None, stmt_span: Span) -> str | None:
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
                self.sink.error("E204", f"tensor '{show(op)}' cannot follow `->`: only layers, activations and blocks can",
                                op.span, help="to combine tensors use `+` or concat(a, b)")
                x = self._placeholder(scope, op.span, (x,))
                continue
            x = self._apply(op, x, scope)
        return x

    def _is_unknown_name(self, expr: ir.Expr, scope: Scope) -> bool:
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

    def _placeholder(self, scope: Scope, span: Span, inputs: tuple[str, ...]) -> str:
        """Stands for the result of an operation that was reported as wrong, so that checking
        goes on after it (arguments of later layers are still checked; shapes are unknown) and
        a name bound to it stays defined (no cascade of `not defined` errors)."""
        node = ir.Node(self._fresh(scope, "invalid"), "invalid", "invalid", {}, inputs, None, span, scope.prefix)
        return self._add(node)

    def _no_current(self, first: ir.Expr, scope: Scope) -> None:
        names = ", ".join(dict.fromkeys(i.name for i in self.spec.inputs))
        if "," in names and not scope.prefix:
            self.sink.error("E208", "with several inputs, a chain must start from a named tensor",
                            first.span, help=f"start it with one of: {names} (e.g. `{self.spec.inputs[0].name} -> ...`)")
        elif isinstance(first, ir.Ident) and first.name not in catalog.layers and first.name not in catalog.activations \
                and first.name not in self.blocks:
            self._undefined(first, scope)

    def _undefined(self, ident: ir.Ident, scope: Scope) -> None:
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

    def _tensor(self, expr: ir.Expr, scope: Scope) -> str | None:
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

    def _operand(self, expr: ir.Expr, scope: Scope) -> str | None:
        if self._is_tensor(expr, scope):
            return self._tensor(expr, scope)
        if isinstance(expr, ir.Ident):
            self._undefined(expr, scope)
        else:
            self.sink.error("E205", "expected a tensor here (a name, a sum or concat(...))", expr.span,
                            help="layers go in a chain: `x -> Dense(8)`")
        return None

    def _combine(self, op: str, terms: list[str | None], expr: ir.Expr, scope: Scope) -> str | None:
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
    def _apply(self, op: ir.Expr, x: str, scope: Scope) -> str:
        """Apply one operation to the tensor `x`; a wrong one yields a placeholder (reported)."""
        result = self._apply_op(op, x, scope)
        return result if result is not None else self._placeholder(scope, op.span, (x,))

    def _apply_op(self, op: ir.Expr, x: str, scope: Scope) -> str | None:
        if id(op) in self.refused:  # it would expand past MAX_GRAPH_NODES: reported (E209), not expanded
            scope.used.update(names_in(op))
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
        self.sink.error("E205", f"expected a layer, an activation or a block here; received {show(op)}", op.span,
                        help="e.g. `-> Dense(8)` or `-> relu`")
        return None

    def _chain_ops(self, expr: ir.Expr, x: str, scope: Scope) -> str | None:
        items = expr.items if isinstance(expr, ir.Chain) else (expr,)
        for op in items:
            x = self._apply(op, x, scope)
        return x

    def _apply_space(self, space: ir.Space, x: str, scope: Scope) -> str | None:
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

    def _repeat(self, op: ir.Mul, x: str, scope: Scope) -> str | None:
        count_expr = self._resolve(op.right, scope)
        space = count_expr if isinstance(count_expr, ir.Space) else None
        value = literal(count_expr, {}, "repeat")
        if isinstance(value, bool) or not isinstance(value, int):
            self.sink.error("E207", f"a repetition count must be a whole number; received {show(count_expr)}",
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

    def _call(self, call: ir.Call, x: str, scope: Scope) -> str | None:
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
        if self._unknown_op(call):  # a mistyped activation keeps the shape: check on past it
            return x
        cased = _layer_in_other_case(call.name)
        if cased is not None:  # `dense(10)`, reported (E100), is checked as Dense: the shapes go on
            return self._layer(cased, replace(call, name=cased.name), x, scope)
        return None

    def _unknown_op(self, call: ir.Call) -> bool:
        """Report an unknown name; True when it reads as an activation (shape-preserving)."""
        for registry, code in ((catalog.losses, "E102"), (catalog.optimizers, "E103"), (catalog.metrics, "E104")):
            if call.name in registry and call.name not in catalog.activations:
                self.sink.error("E100", f"'{call.name}' is a {registry.what}, not a layer or an activation",
                                call.name_span, help=f"put it in the `{'loss' if code == 'E102' else registry.what + 's' if code == 'E104' else 'optimizer'}` section")
                return False
        layer_hint = suggest(call.name, catalog.layers.spellings + list(self.blocks))
        act_hint = suggest(call.name, catalog.activations.spellings)
        if act_hint and not layer_hint:
            self.sink.error("E101", f"unknown activation '{call.name}'", call.name_span, help=act_hint)
            return True
        self.sink.error("E100", f"unknown layer '{call.name}'", call.name_span,
                        help=layer_hint or "see `docs/language.md` for the catalog of layers")
        return False

    def _layer(self, entry: catalog.LayerEntry, call: ir.Call, x: str, scope: Scope) -> str | None:
        where = entry.name
        call, trainable = self._take_trainable(call, where, scope)
        bound = bind(entry.params, call, where, self.sink, lambda e: self._resolve(e, scope))
        values = dict(bound.values)
        kind, searched = entry.name, dict(bound.searched, **trainable.searched)
        if entry.name == "Bidirectional":
            inner = self._inner_layer(values.get("layer"), call, scope)
            if inner is None:
                return None
            entry, inner_bound, inner_trainable = inner
            kind = entry.name
            values = dict(inner_bound.values, bidirectional=True)
            searched.update(inner_bound.searched, **inner_trainable.searched)
            trainable = trainable if trainable.values["trainable"] is False else inner_trainable
        activation = values.pop("activation", None) if entry.activation_param else None
        if any(values[p.name] is None and (p.required or p.default is not None)
               for p in entry.params if p.name in values):
            # an argument was wrong: reported already; the shape cannot be inferred, but a
            # written `activation=` is still checked
            name = self._placeholder(scope, call.span, (x,))
        else:
            name = self._fresh(scope, snake(kind))
            out, params = self._infer(entry, values, x, call, name)
            total = params[0] + params[1]
            frozen = scope.frozen or trainable.values["trainable"] is False
            node = ir.Node(name, "layer", kind, values, (x,), out, call.span, scope.prefix, searched,
                           total, total if frozen else params[1], trainable=not frozen)
            self._add(node)
            if out is not None and total == 0 and trainable.values["trainable"] is False and not scope.frozen:
                self.sink.warning("W114", f"{kind} has no weights: trainable=false changes nothing here",
                                  trainable.spans["trainable"], help="remove trainable=false; freeze the layers "
                                  "with weights (a frozen block's Dropout still drops, as in Keras)")
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

    def _inner_layer(self, value: Any, call: ir.Call, scope: Scope):
        """(entry, bound arguments, bound `trainable`) of the layer Bidirectional wraps, or None."""
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
        value, trainable = self._take_trainable(value, entry.name, scope)
        inner = bind(entry.params, value, entry.name, self.sink, lambda e: self._resolve(e, scope))
        if any(v is None and p.required for p, v in ((p, inner.values[p.name]) for p in entry.params)):
            return None
        return entry, inner, trainable

    def _take_trainable(self, call: ir.Call, where: str, scope: Scope) -> tuple[ir.Call, Bound]:
        """`trainable=` taken out of a layer or block use (every one takes it, by name: Keras's
        word): the call without it, and its value bound (true unless written; None when wrong,
        reported as E107)."""
        given = tuple(a for a in call.args if a.name == TRAINABLE.name)
        rest = tuple(a for a in call.args if a.name != TRAINABLE.name)
        bound = bind((TRAINABLE,), replace(call, args=given), where, self.sink, lambda e: self._resolve(e, scope))
        return (replace(call, args=rest) if given else call), bound

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
        check_elements(out, call.span, f"{entry.name} ({name})", self.sink)
        return out, (total, frozen)

    def _activation(self, call: ir.Call, x: str, scope: Scope) -> str | None:
        entry = catalog.activations.get(call.name)
        if entry is None:
            self.sink.error("E101", f"unknown activation '{call.name}'", call.name_span,
                            help=suggest(call.name, catalog.activations.spellings))
            return x  # shape-preserving: the checking goes on past the mistake
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

    def _block(self, call: ir.Call, x: str, scope: Scope) -> str | None:
        block = self.blocks[call.name]
        self.instantiated.add(block.name)
        if block.name in scope.block_stack:
            return None  # a cycle: reported once by _check_recursion
        if len(scope.block_stack) >= MAX_BLOCK_DEPTH:  # each level costs stack and a longer node name
            self.sink.error("E004", f"blocks use blocks more than {MAX_BLOCK_DEPTH} deep", call.span,
                            help="flatten the nesting of blocks")
            return None
        trainable = None
        if TRAINABLE.name not in block.params:  # else the block's own parameter
            call, trainable = self._take_trainable(call, f"block {block.name}", scope)
        bound = self._bind_block_args(block, call, scope)
        if bound is None:
            return None
        instance = self._fresh(scope, snake(block.name))
        inner = Scope(tuple(instance.split(".")), {"in": x}, bound, scope.block_stack + (block.name,))
        inner.frozen = scope.frozen or (trainable is not None and trainable.values["trainable"] is False)
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

    def _bind_block_args(self, block: ir.Block, call: ir.Call, scope: Scope) -> dict[str, ir.Expr] | None:
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
