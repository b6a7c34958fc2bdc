"""Syntax tree (syntax.py) -> spec IR. Sections are interpreted here; expressions are kept as written."""
from __future__ import annotations

from collections import Counter
from typing import Iterable


from . import ir
from .diagnostics import Sink, Span
from .syntax import SECTIONS, Node, Tok

SECTION_NAMES = SECTIONS  # syntax.py's table of keywords
SINGLE_SECTIONS = tuple(s for s in SECTIONS if s not in ("input", "block", "network"))  # written at most once


def span_of(node: Node | Tok) -> Span:
    return Span(*node.pos)


class Lowerer:
    def __init__(self, sink: Sink):
        self.sink = sink
        self._labels: Counter[str] = Counter()
        self._block = ""  # the block whose body is being lowered: prefixes search-space labels
        self._block_params: dict[str, tuple[str, ...]] = {}  # names positional block arguments in labels

    # ------------------------------------------------------------ model and sections
    def spec(self, tree: Node) -> ir.Spec:
        return self.body(tree.children[0])

    def body(self, model: Node, nested: bool = False) -> ir.Spec:
        """A model's items, or a network's (`nested`: a network inside a network is refused, E021)."""
        name_tok = model.children[1]
        parts: dict[str, list] = {k: [] for k in SECTION_NAMES}
        sections: dict[str, Span] = {}
        for item in model.children[2:]:
            if nested and isinstance(item, Node) and item.kind == "network_def":
                self.sink.error("E021", f"network '{item.children[1]}' is written inside network '{name_tok}'",
                                self._head_span(item), help="write every `network` directly in the model")
                continue
            if not isinstance(item, Node):
                continue
            key, value = self.section(item)
            if key in SINGLE_SECTIONS and key in sections:
                self.sink.error("E010", f"the `{key}` section is written twice",
                                self._head_span(item),
                                notes=[f"the first one is at line {sections[key].line}"],
                                help=f"keep one `{key}` section")
                continue
            sections.setdefault(key, self._head_span(item))
            parts[key].append(value)
        return ir.Spec(
            name=str(name_tok),
            inputs=tuple(parts["input"]),
            blocks=tuple(parts["block"]),
            layers=parts["layers"][0] if parts["layers"] else (),
            loss=parts["loss"][0] if parts["loss"] else (),
            optimizer=parts["optimizer"][0] if parts["optimizer"] else None,
            metrics=parts["metrics"][0] if parts["metrics"] else (),
            train=parts["train"][0] if parts["train"] else (),
            search=parts["search"][0] if parts["search"] else (),
            span=span_of(model),
            sections=sections,
            networks=self._networks(parts["network"]),
            adversarial=parts["adversarial"][0] if parts["adversarial"] else (),
        )

    def _networks(self, networks: list[ir.Spec]) -> tuple[ir.Spec, ...]:
        seen: dict[str, ir.Spec] = {}
        for net in networks:
            if net.name in seen:
                self.sink.error("E021", f"network '{net.name}' is written twice", net.span,
                                notes=[f"the first one is at line {seen[net.name].span.line}"],
                                help="give each network its own name")
            seen.setdefault(net.name, net)
        return tuple(seen.values())

    @staticmethod
    def _head_span(item: Node) -> Span:
        first = item.children[0]
        return span_of(first) if isinstance(first, Tok) else span_of(item)

    def section(self, item: Node):
        kind = item.kind
        if kind == "input_decl":
            return "input", self.input_decl(item)
        if kind == "block_def":
            return "block", self.block_def(item)
        if kind == "layers_sec":
            return "layers", self.stmts(item.children[1:])
        if kind == "network_def":
            return "network", self.body(item, nested=True)
        keyword = str(item.children[0])
        if kind == "setting_sec":
            return keyword, tuple(self.setting(s, keyword) for s in item.children[1:])
        return keyword, self.simple_section(keyword, item.children[1])

    def input_decl(self, item: Node) -> ir.Input:
        _, name, ttype = item.children
        dtype = "float"
        dims: list[int | None] = []
        for child in ttype.children:
            if isinstance(child, Tok) and child.kind == "INT_KW":
                dtype = "int"
            elif isinstance(child, Node) and child.kind == "dim_any":
                dims.append(None)
            elif isinstance(child, Node):
                dims.append(self._dim(child.children[0]))
        if not dims:
            self.sink.error("E014", f"input '{name}' has no dimensions", span_of(ttype),
                            help="write its shape without the batch dimension, e.g. [4] or [1, 28, 28]")
        return ir.Input(str(name), tuple(dims), dtype, span_of(item))

    def _dim(self, tok: Tok) -> int | None:
        text = str(tok)
        if text.isdigit() and len(text) > MAX_DIGITS:
            self.sink.error("E014", f"the dimension {_abbrev(text)} is too large", span_of(tok))
            return 1
        if not text.isdigit() or int(text) <= 0:
            self.sink.error("E014", f"a dimension must be a positive whole number; received {text}",
                            span_of(tok), help="use `?` for a dimension known only at run time")
            return 1
        return int(text)

    def block_def(self, item: Node) -> ir.Block:
        name = item.children[1]
        params: list[str] = []
        body_start = 2
        for child in item.children[2:]:
            if isinstance(child, Tok) and child.kind == "NAME":
                params.append(str(child))
                body_start += 1
            else:
                break
        seen: set[str] = set()
        for p in params:
            if p in seen:
                self.sink.error("E018", f"block '{name}' names parameter '{p}' twice", span_of(name))
            seen.add(p)
        self._block = str(name)
        self._block_params[str(name)] = tuple(params)
        body = self.stmts(item.children[body_start:])
        self._block = ""
        return ir.Block(str(name), tuple(params), body, span_of(item))

    def stmts(self, children: Iterable) -> tuple[ir.Stmt, ...]:
        out = []
        for st in children:
            if not isinstance(st, Node):
                continue
            if st.kind == "assign":
                out.append(ir.Stmt(str(st.children[0]), self.expr(st.children[1], "layer"), span_of(st)))
            else:
                out.append(ir.Stmt(None, self.expr(st.children[0], "layer"), span_of(st)))
        return tuple(out)

    def simple_section(self, keyword: str, value: Node | Tok):
        expr = self.expr(value, keyword)
        if keyword == "loss":
            return self.loss_terms(expr)
        if keyword == "optimizer":
            return self.as_call(expr, "optimizer", "E019")
        return self.metric_calls(expr)

    def setting(self, st: Node, section: str) -> ir.Setting:
        name = str(st.children[0])
        values = tuple(self.expr(v, f"{section}.{name}") for v in st.children[1:])
        return ir.Setting(name, values, span_of(st))

    def loss_terms(self, expr: ir.Expr) -> tuple[ir.LossTerm, ...]:
        terms = expr.terms if isinstance(expr, ir.Add) else (expr,)
        out = []
        for term in terms:
            weight, body = 1.0, term
            if isinstance(term, ir.Mul):
                num, other = (term.left, term.right) if isinstance(term.left, ir.Num) else (term.right, term.left)
                if isinstance(num, ir.Num):
                    weight, body = float(num.value), other
            call = self.as_call(body, "loss", "E012")
            if call is not None:
                out.append(ir.LossTerm(weight, call, term.span))
        return tuple(out)

    def metric_calls(self, expr: ir.Expr) -> tuple[ir.Call, ...]:
        items = expr.items if isinstance(expr, ir.ListExpr) else (expr,)
        calls = (self.as_call(i, "metric", "E013") for i in items)
        return tuple(c for c in calls if c is not None)

    def as_call(self, expr: ir.Expr, what: str, code: str) -> ir.Call | None:
        if isinstance(expr, ir.Call):
            return expr
        if isinstance(expr, ir.Ident):
            return ir.Call(expr.name, (), expr.span, expr.span)
        if isinstance(expr, ir.Space):
            self.sink.error(code, f"a search space cannot choose the {what}", expr.span,
                            help=f"search over the {what}'s arguments instead, e.g. " + {
                                "loss": "focal(gamma=uniform(1.0, 3.0))", "metric": "top_k_accuracy(k=choice(3, 5))",
                                "optimizer": "Adam(lr=loguniform(0.0001, 0.1))"}[what])
            return None
        hint = {"loss": "write a loss name, a call like focal(gamma=2.0), or a weighted sum like 0.5 * mse + 0.5 * mae",
                "metric": "write a metric name or a call, e.g. [accuracy, top_k_accuracy(k=3)]",
                "optimizer": "write an optimizer call, e.g. Adam(lr=0.001)"}[what]
        self.sink.error(code, f"expected {'an' if what[0] in 'aeiou' else 'a'} {what} here", expr.span, help=hint)
        return None

    # ------------------------------------------------------------ expressions
    def expr(self, node, context: str) -> ir.Expr:
        if isinstance(node, Tok):
            return self._token(node)
        kind = node.kind
        if kind == "number":
            return self._number(node.children[0])
        if kind == "call":
            return self._call(node, context)
        sp = span_of(node)  # not before: the two above take their spans themselves
        if kind == "string":
            return ir.Str(_unquote(str(node.children[0])), sp)
        if kind in ("true", "false"):
            return ir.Bool(kind == "true", sp)
        if kind == "name":
            return ir.Ident(str(node.children[0]), sp)
        if kind == "dotted":
            return ir.Dotted(tuple(str(c) for c in node.children), sp)
        if kind == "list":
            return ir.ListExpr(tuple(self.expr(c, context) for c in node.children), sp)
        if kind == "group":
            return ir.Group(self.expr(node.children[0], context), sp)
        if kind == "neg":
            inner = self.expr(node.children[0], context)
            if isinstance(inner, ir.Num):
                return ir.Num(-inner.value, sp)
            return ir.Neg(inner, sp)
        if kind == "chain":
            return ir.Chain(tuple(self.expr(c, context) for c in node.children), sp)
        if kind == "sum":
            return ir.Add(tuple(self.expr(c, context) for c in node.children), sp)
        if kind == "product":
            return self._product(node, context)
        raise AssertionError(f"unhandled tree node {kind}")  # grammar and lowering out of step

    def _product(self, node: Node, context: str) -> ir.Expr:
        parts = node.children
        acc = self.expr(parts[0], context)
        for right in parts[1:]:
            rhs = self.expr(right, f"{_head_name(acc)}.repeat" if context == "layer" else context)
            acc = ir.Mul(acc, rhs, Span(acc.span.line, acc.span.col,
                                        rhs.span.end_line, rhs.span.end_col))
        return acc

    def _call(self, node: Node, context: str) -> ir.Expr:
        name_tok = node.children[0]
        name = str(name_tok)
        args = []
        for i, a in enumerate(node.children[1:]):
            if isinstance(a, Node) and a.kind == "kwarg":
                key = str(a.children[0])
                args.append(ir.Arg(key, self.expr(a.children[1], f"{name}.{key}"), span_of(a)))
            else:
                args.append(ir.Arg(None, self.expr(a, f"{name}.{self._arg_name(name, i)}"), span_of(a)))
        sp = span_of(node)
        if name in ir.SPACE_KINDS:
            return self._space(name, args, sp, context)
        return ir.Call(name, tuple(args), sp, span_of(name_tok))

    def _arg_name(self, call_name: str, index: int) -> str:
        params = self._block_params.get(call_name)
        if params is not None:
            return params[index] if index < len(params) else str(index)
        return _positional_name(call_name, index)

    def _space(self, kind: str, args: list[ir.Arg], sp: Span, context: str) -> ir.Space:
        options = tuple(a.value for a in args)
        if any(a.name is not None for a in args):
            self.sink.error("E404", f"`{kind}` takes only positional values", sp,
                            help=f"write e.g. {kind}(16, 32, 64)" if kind == "choice" else f"write {kind}(low, high)")
        if kind == "choice" and not options:
            self.sink.error("E404", "`choice` needs at least one option", sp)
            options = (ir.Num(0, sp),)
        elif kind != "choice" and len(options) != 2:
            self.sink.error("E404", f"`{kind}` takes exactly two bounds (low, high); received {len(options)}", sp)
            options = (options + (ir.Num(0, sp), ir.Num(1, sp)))[:2]
        elif kind != "choice":
            self._check_bounds(kind, options, sp)
        base = _label_base(context, options)
        if self._block:
            base = f"{self._block}.{base}"
        self._labels[base] += 1
        label = base if self._labels[base] == 1 else f"{base}_{self._labels[base]}"
        return ir.Space(kind, options, sp, label)

    def _check_bounds(self, kind: str, options: tuple[ir.Expr, ...], sp: Span) -> None:
        lo, hi = options
        if not (isinstance(lo, ir.Num) and isinstance(hi, ir.Num)):
            self.sink.error("E404", f"the bounds of `{kind}` must be numbers", sp)
            return
        if lo.value >= hi.value:
            self.sink.error("E404", f"`{kind}` needs low < high; received {lo.value} and {hi.value}", sp)
        if kind == "loguniform" and lo.value <= 0:
            self.sink.error("E404", f"`loguniform` needs positive bounds; received {lo.value}", sp)
        if kind == "int_range" and not (isinstance(lo.value, int) and isinstance(hi.value, int)):
            self.sink.error("E404", "`int_range` bounds must be whole numbers", sp)

    def _token(self, tok: Tok) -> ir.Expr:
        if tok.kind == "NUMBER":
            return self._number(tok)
        if tok.kind == "STRING":
            return ir.Str(_unquote(str(tok)), span_of(tok))
        return ir.Ident(str(tok), span_of(tok))

    def _number(self, tok: Tok) -> ir.Num:
        text = str(tok)
        sp = span_of(tok)
        if text.isdigit() and len(text) > MAX_DIGITS:  # int() refuses > 4300 digits; nothing needs 100
            self.sink.error("E107", f"the number {_abbrev(text)} is too large", sp)
            return ir.Num(0, sp)
        if text.isdigit():
            return ir.Num(int(text), sp)
        value = float(text)
        if value != value or value in (float("inf"), float("-inf")):
            self.sink.error("E107", f"the number {text} is too large", sp)
            value = 0.0
        return ir.Num(value, sp)


MAX_DIGITS = 100  # a whole number longer than this is a typo or an attack, never a size


def _abbrev(text: str) -> str:
    return text if len(text) <= 20 else f"{text[:10]}...{text[-4:]} ({len(text)} digits)"



def _label_base(context: str, options: tuple[ir.Expr, ...]) -> str:
    """A readable dimension name: `Dense.units`, `Adam.lr`, `train.batch_size`, `Dense.repeat`."""
    if context == "layer":  # a space standing for an operation: `-> choice(relu, elu)`
        return "activation" if all(isinstance(o, ir.Ident) for o in options) else "layer"
    return context


def _positional_name(call_name: str, index: int) -> str:
    """The catalog's name for a positional argument (`Dense`'s first is `units`), else its index."""
    from . import catalog

    for registry in (catalog.layers, catalog.activations, catalog.optimizers, catalog.losses, catalog.metrics):
        entry = registry.get(call_name)
        if entry is not None:
            return entry.params[index].name if index < len(entry.params) else str(index)
    return str(index)


def _head_name(expr: ir.Expr) -> str:
    """The first layer or block a repeated expression applies: `(Dense(8) -> relu) * 3` -> Dense."""
    while isinstance(expr, (ir.Group, ir.Chain, ir.Mul)):
        expr = expr.inner if isinstance(expr, ir.Group) else expr.items[0] if isinstance(expr, ir.Chain) else expr.left
    if isinstance(expr, ir.Call):
        return expr.name
    return expr.name if isinstance(expr, ir.Ident) else "layers"


def _unquote(text: str) -> str:
    body = text[1:-1]
    return body.replace('\\"', '"').replace("\\\\", "\\").replace("\\n", "\n").replace("\\t", "\t")


def lower(tree: Node, sink: Sink) -> ir.Spec:
    return Lowerer(sink).spec(tree)

