"""Standalone PyTorch source for a spec (`nnspec compile FILE --emit python`): the way out.

The file is made from what trains, never written again beside it:
- the classes of `torch_layers.py` the model's layers are made of, and the functions they call
  (the window geometry of `catalog/geometry.py`, an activation such as `step`), copied as
  source: the same text that trains;
- `__init__`: one line per layer, the call its catalog entry's `build` described and
  `build_model` made (`Conv(2, 1, 32, (3, 3), ...)`, `nn.Linear(4, 16, bias=True)`), in the
  same order, so the same state_dict keys and shapes;
- `forward`: torch.fx's code for the model's generated forward, the one that trains.

It imports only torch. Everything written into it from the spec is a literal written with
repr, a name the checker made (`conv2d_1`, `residual_1.dense_2`) or torch.fx's sanitized code;
the file name goes through `in_docstring`. nnspec only writes this text; it never executes it
(the tests import the generated file).
"""
from __future__ import annotations

import ast
import importlib.util
import inspect
import keyword
import re
import sys
import types
from pathlib import Path

from ..catalog.base import TorchModule
from ..diagnostics import UserError

INDENT = " " * 8

# What the ejected file imports, as (module, attribute) per name: the names its copied source may use.
IMPORTS = ("import torch", "import torch.nn.functional as F", "from torch import Tensor, nn")
PROVIDED = {"torch": ("torch", None), "F": ("torch.nn.functional", None), "Tensor": ("torch", "Tensor"),
            "nn": ("torch", "nn")}
NAME = re.compile(r"[A-Za-z_][A-Za-z_0-9]*(\.[A-Za-z_][A-Za-z_0-9]*)*")


def _py(v) -> str:
    """A Python literal (floats keep every digit, so the emitted numbers are exactly ours); a
    TorchModule is the call that makes it."""
    if isinstance(v, TorchModule):
        return call_text(v)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, tuple) and len(v) == 1:
        return f"({_py(v[0])},)"
    if isinstance(v, (tuple, list)):
        inner = ", ".join(_py(i) for i in v)
        return f"({inner})" if isinstance(v, tuple) else f"[{inner}]"
    if v is None or isinstance(v, (bool, int, str)):
        return repr(v)
    raise AssertionError(f"{v!r} is not a literal the ejected source can hold")


def call_text(spec: TorchModule) -> str:
    """`Conv(2, 1, 32, (3, 3), stride=(1, 1), ...)`: the call `torch_layers.instantiate` makes."""
    if not NAME.fullmatch(spec.cls):
        raise AssertionError(f"{spec.cls!r} is not a class name")
    if not all(k.isidentifier() and not keyword.iskeyword(k) for k in spec.kwargs):
        raise AssertionError(f"{spec.cls}'s keyword arguments {list(spec.kwargs)} are not all names")
    args = [_py(a) for a in spec.args] + [f"{k}={_py(v)}" for k, v in spec.kwargs.items()]
    return f"{spec.cls}({', '.join(args)})"


def in_docstring(text: str) -> str:
    """`text` for inside a \"\"\"docstring\"\"\" of the generated source, where it must end nothing
    and run nothing: backslashes, quotes, newlines and every non-ASCII or unprintable character
    are escaped, so the docstring holds exactly `text` (a file may be named `m\"\"\"; import os`)."""
    return text.encode("unicode_escape").decode("ascii").replace('"', '\\"')


def class_name(model: str, taken: set[str] = frozenset()) -> str:
    """The model's name as a Python class name: a keyword (`model lambda`), one of the module's own
    names (`torch`, `nn`, `Conv`...) gets trailing underscores. (The grammar allows only
    [A-Za-z_][A-Za-z_0-9]*.)"""
    if not model.isidentifier():  # the grammar never lets one through; refuse rather than write it
        raise UserError(f"the model name {model!r} is not a Python identifier")
    name = model
    while keyword.iskeyword(name) or name in taken or name in {"self", "None", "True", "False"} | set(PROVIDED):
        name += "_"
    return name


# ---------------------------------------------------------------- copied source
class _Module:
    """The top-level definitions of one of nnspec's modules, as source, and what each refers to."""

    def __init__(self, module: types.ModuleType):
        self.name = module.__name__
        self.lines = inspect.getsource(module).splitlines()
        self.defs: dict[str, ast.stmt] = {}
        self.imports: dict[str, tuple[str, str | None]] = {}  # name -> (module, attribute)
        for stmt in ast.parse("\n".join(self.lines)).body:
            if isinstance(stmt, (ast.FunctionDef, ast.ClassDef)):
                self.defs[stmt.name] = stmt
            elif isinstance(stmt, ast.Assign):
                for target in stmt.targets:
                    if isinstance(target, ast.Name):
                        self.defs[target.id] = stmt
            elif isinstance(stmt, ast.Import):
                for alias in stmt.names:
                    if alias.asname:
                        self.imports[alias.asname] = (alias.name, None)
                    else:
                        self.imports[alias.name.split(".")[0]] = (alias.name.split(".")[0], None)
            elif isinstance(stmt, ast.ImportFrom):
                source = importlib.util.resolve_name("." * stmt.level + (stmt.module or ""), module.__package__)
                for alias in stmt.names:
                    self.imports[alias.asname or alias.name] = (source, alias.name)

    def text(self, name: str) -> str:
        stmt = self.defs[name]
        first = min([stmt.lineno] + [d.lineno for d in getattr(stmt, "decorator_list", [])])
        return "\n".join(self.lines[first - 1:stmt.end_lineno])

    def refers_to(self, name: str) -> list[str]:
        """The names `name`'s definition reads (its own, locals and builtins included)."""
        stmt = self.defs[name]
        return sorted({n.id for n in ast.walk(stmt) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)} - {name})


_MODULES: dict[str, _Module] = {}


def _module(name: str) -> _Module:
    """One of nnspec's modules the model's code comes from (imported already, by that code)."""
    if name not in _MODULES:
        _MODULES[name] = _Module(sys.modules[name])
    return _MODULES[name]


def copied_source(roots: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """(name, source) of each definition in `roots` ((module, name) pairs of nnspec's modules) and
    of every definition of nnspec's they use, each before its users. A name they take from
    anywhere but torch or nnspec (math, typing...) cannot be ejected: an AssertionError."""
    seen: set[tuple[str, str]] = set()
    out: list[tuple[str, str]] = []
    names: dict[str, str] = {}  # ejected name -> its module, to refuse two definitions of one name

    def visit(module: str, name: str) -> None:
        if (module, name) in seen:
            return
        seen.add((module, name))
        src = _module(module)
        for ref in src.refers_to(name):
            if ref in src.defs:
                visit(module, ref)
            elif ref in src.imports:
                origin = src.imports[ref]
                if PROVIDED.get(ref) == origin:
                    continue
                if not (origin[0].startswith("nnspec.") and origin[1] == ref):
                    raise AssertionError(f"{module}.{name} uses {ref} from {origin[0]}: the ejected source imports only "
                                         f"{', '.join(PROVIDED)} from torch")
                visit(*origin)
        if names.setdefault(name, module) != module:
            raise AssertionError(f"{name} is defined in both {names[name]} and {module}")
        out.append((name, src.text(name)))

    for module, name in roots:
        visit(module, name)
    return out


def _classes(spec: TorchModule) -> list[str]:
    """The torch_layers classes a TorchModule (and the TorchModules among its arguments) uses."""
    own = [] if spec.cls.startswith("nn.") else [spec.cls]
    inner = [c for v in (*spec.args, *spec.kwargs.values()) if isinstance(v, TorchModule) for c in _classes(v)]
    return own + inner


# ---------------------------------------------------------------- the file
def python_source(checked, filename: str = "<spec>") -> str:
    return ejected(checked, filename)[1]


def ejected(checked, filename: str = "<spec>") -> tuple[str, str]:
    """(the model class's name, the file's text)."""
    from . import torch_layers
    from .torch_model import build_model

    model = build_model(checked)
    layers = [n for n in checked.graph.nodes if n.op == "layer"]
    for node in layers:
        if not NAME.fullmatch(node.name) or any(keyword.iskeyword(p) for p in node.name.split(".")):
            raise AssertionError(f"layer name {node.name!r} is not a Python attribute path")
    forward, fx_globals = _forward(model)
    roots = [(torch_layers.__name__, c) for node in layers for c in _classes(model.made_from[node.name])]
    aliases = []
    for name, value in fx_globals:
        roots.append((value.__module__, value.__name__))
        aliases.append(f"{name} = {value.__name__}")
    copied = copied_source(roots)
    cls = class_name(checked.spec.name, {name for name, _ in copied} | {name for name, _ in fx_globals})
    lines = [
        f'"""{cls}: standalone PyTorch source generated by nnspec from {in_docstring(Path(filename).name)}.',
        "",
        "It needs only torch. Load weights trained by nnspec with",
        f"    model = {cls}(); model.load_state_dict(torch.load(path, weights_only=True)['model'])",
        "(or any state_dict of the same keys); call model.eval() before inference.",
        "The layer classes and functions below are nnspec's own, as they train.",
        '"""',
        *IMPORTS,
    ]
    for _, text in copied:
        lines += ["", "", text]
    if aliases:
        lines += ["", "", "# the functions the generated forward calls, under the names torch.fx gave them", *aliases]
    lines += ["", "", f"class {cls}(nn.Module):", "    def __init__(self):", "        super().__init__()"]
    lines += [INDENT + line for line in _init(layers, model.made_from)]
    lines += _frozen(layers, model.frozen_statistics)
    return cls, "\n".join(lines + [""] + _with_docstring(forward, checked.graph) + [""])


def _forward(model) -> tuple[list[str], list[tuple[str, types.FunctionType]]]:
    """torch.fx's code of the model's forward, as lines, and the nnspec functions it calls by the
    global names fx gave them (`nnspec_backends_torch_layers_step`)."""
    code = model.fx_forward.graph.python_code(root_module="self")
    used = {n.id for n in ast.walk(ast.parse(code.src)) if isinstance(n, ast.Name)}
    functions = []
    for name, value in sorted(code.globals.items()):
        if name not in used or name == "torch":
            continue
        if not (isinstance(value, types.FunctionType) and value.__module__.startswith("nnspec.")):
            raise AssertionError(f"the generated forward uses {name} ({value!r}), which the ejected source lacks")
        functions.append((name, value))
    forward = [line.rstrip() for line in code.src.strip().splitlines()]
    assert forward[0].startswith("def forward(self"), forward[0]
    return forward, functions


def _init(layers, made_from: dict[str, TorchModule]) -> list[str]:
    """`self.<layer> = <the call its entry's build described>`, block instances as plain containers."""
    lines, containers = [], set()
    for node in layers:
        parts = node.name.split(".")
        for depth in range(1, len(parts)):
            prefix = ".".join(parts[:depth])
            if prefix not in containers:
                containers.add(prefix)
                lines.append(f"self.{prefix} = nn.Module()  # block instance {prefix}")
        lines.append(f"self.{node.name} = {call_text(made_from[node.name])}")
    return lines


def _frozen(layers, statistics: list[str]) -> list[str]:
    """trainable=false as it trains: the frozen layers' parameters take no gradient, and the frozen
    layers that keep running statistics (BatchNorm) stay in eval mode whatever train() is given."""
    frozen = [node.name for node in layers if not node.trainable and node.params]
    if not frozen:
        return []
    lines = [INDENT + "# frozen by trainable=false: not trained (pass only requires_grad parameters to an optimizer)",
             *(f"{INDENT}self.{name}.requires_grad_(False)" for name in frozen)]
    if statistics:
        names = ", ".join(f"self.{name}" for name in statistics)
        lines += [f"{INDENT}self.train()", "", "    def train(self, mode: bool = True):",
                  '        """nn.Module.train; frozen BatchNorm stays in eval mode, its statistics fixed (as in Keras)."""',
                  "        super().train(mode)",
                  f"        for layer in ({names},):",
                  "            layer.train(False)",
                  "        return self"]
    return lines


def _with_docstring(forward: list[str], graph) -> list[str]:
    """The forward's lines, indented into the class, with a docstring of its inputs and output."""
    out = graph.output_node
    shape = ", ".join("T" if d is None else str(d) for d in out.out.shape)
    docstring = [
        '    """Inputs (batch first):',
        *(f"        {placeholder}: {_described(graph.node(n).out)}"
          for placeholder, n in zip(_arguments(forward[0]), graph.inputs)),
        f"    Returns [N, {shape}] ({out.kind if out.op == 'activation' else 'as written'}).",
        '    """',
    ]
    return ["    " + line if line else "" for line in forward[:1] + docstring + forward[1:]]


def _arguments(signature: str) -> list[str]:
    """`def forward(self, x, y):` -> ["x", "y"]."""
    return [a.strip() for a in signature[signature.index("(") + 1:signature.rindex(")")].split(",")][1:]


def _described(t) -> str:
    dims = ", ".join("T" if d is None else str(d) for d in t.shape)
    return f"[N, {dims}] {'int64 token ids' if t.dtype == 'int' else 'float32'}"


def emit(result, output: str | None) -> None:
    """`nnspec compile FILE --emit python [-o model.py]` (default: <spec>.py beside the spec)."""
    import click

    from ..fsutil import atomic_write_text

    path = Path(output) if output else Path(result.filename).with_suffix(".py")
    cls, text = ejected(result.checked, result.filename)
    atomic_write_text(path, text)
    click.echo(f"wrote {path} (class {cls}, imports only torch)")
