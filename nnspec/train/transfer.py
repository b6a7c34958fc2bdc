"""`init "PATH"`: a model starts from another run's weights, layer by layer.

A layer's weights are its state_dict entries under its name (`conv2d_1.weight`,
`feat_1.batch_norm_1.running_mean`): the names the checker gives, the same in every spec whose
layers come in the same order. A layer of this model is *loaded* when the source has every entry
of it with the same shape, *skipped* when the source has none of it (it keeps its fresh
initialisation); anything in between (same name, other shapes or other entries) is an error that
lists both. Layers of the source this model lacks are *unused*. The source is any nnspec
checkpoint: read with weights_only=True and its checksum verified (checkpoint.load), but not
tied to this spec's IR hash, since it is another spec's.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from ..diagnostics import UserError
from .. import fsutil
from . import checkpoint as ckpt_io

MISMATCH_HELP = ("a layer that should start fresh needs a name the source does not have: the checker names "
                 "layers by kind and order (dense_1, dense_2), and a block use puts its layers under its own "
                 "name (head_1.dense_1); or make the shapes agree")


@dataclass
class InitReport:
    """What `init` did to each layer of the model."""

    checkpoint: Path
    spec_name: str
    epoch: Any
    loaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # absent in the source: fresh weights
    unused: list[str] = field(default_factory=list)  # layers of the source that this model lacks
    sizes: dict[str, int] = field(default_factory=dict)  # layer -> numbers loaded or initialised

    def notes(self) -> list[str]:
        """The report as run notes: one line per outcome that happened."""
        lines = [f"init: {len(self.loaded)} layer(s) loaded from {self.checkpoint} ({self.spec_name}, epoch "
                 f"{self.epoch}): {_listed(self.loaded)}"]
        if self.skipped:
            lines.append(f"init: {len(self.skipped)} layer(s) not in it, freshly initialised: {_listed(self.skipped)}")
        if self.unused:
            lines.append(f"init: {len(self.unused)} layer(s) of it not in this model, unused: {_listed(self.unused)}")
        return lines

    def as_json(self) -> dict[str, Any]:
        status = {**{n: "loaded" for n in self.loaded}, **{n: "skipped" for n in self.skipped}}
        return {"checkpoint": str(self.checkpoint), "spec_name": self.spec_name, "epoch": self.epoch,
                "layers": [{"name": n, "status": s, "values": self.sizes.get(n, 0)} for n, s in status.items()],
                "unused": list(self.unused)}


def _listed(names: list[str], most: int = 12) -> str:
    shown = ", ".join(names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "") if names else "none"


def checkpoint_path(init: str, base_dir: Path, where: str | None) -> Path:
    """The checkpoint `init` names: a file as given, or a run folder's best.pt (else its last.pt);
    a relative path is relative to the spec's folder."""
    path = Path(init).expanduser()
    path = path if path.is_absolute() else base_dir / path
    if path.is_dir():
        found = fsutil.run_checkpoint(path)
        if found is None:
            raise UserError(f"init: the folder {path} holds no checkpoint (best.pt or last.pt)", where=where,
                            code="E113", help="give the folder of a finished `nnspec train` run, or a .pt file")
        return found
    if not path.is_file():
        raise UserError(f"init: no run folder or checkpoint at {path}", where=where, code="E113",
                        help="a path relative to the spec's folder, to a run folder (runs/Model/1) or a .pt file")
    return path


def load_source(path: Path, where: str | None) -> dict[str, Any]:
    """The checkpoint, verified (checksum, weights only) but of any spec; its model state checked."""
    try:
        state = ckpt_io.load(path)
    except UserError as err:
        raise UserError(f"init: {err.message}", where=where, code="E113", help=err.help) from None
    weights = state["model"]
    if not isinstance(weights, Mapping) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                   for k, v in weights.items()):
        raise UserError(f"init: {path} holds no model weights (a mapping of names to tensors)", where=where,
                        code="E113", help="give the last.pt or best.pt of a `nnspec train` run")
    return state


def layer_entries(names: list[str], keys: list[str]) -> dict[str, list[str]]:
    """State_dict keys grouped by layer: each key goes to the longest layer name it starts with."""
    by_layer: dict[str, list[str]] = {n: [] for n in names}
    longest_first = sorted(names, key=len, reverse=True)
    for key in keys:
        owner = next((n for n in longest_first if key.startswith(n + ".")), None)
        if owner is not None:
            by_layer[owner].append(key)
    return by_layer


def _shape(t: torch.Tensor | None) -> str:
    return "absent" if t is None else "[" + ", ".join(str(d) for d in t.shape) + "]"


def apply_init(model: nn.Module, layer_names: list[str], init: str, base_dir: Path,
               where: str | None = None) -> InitReport:
    """Copy into `model` the weights of every layer the checkpoint `init` has with the same shapes;
    raise a UserError listing every layer whose name matches but whose shapes do not."""
    path = checkpoint_path(init, base_dir, where)
    state = load_source(path, where)
    source: Mapping[str, torch.Tensor] = state["model"]
    own = model.state_dict()
    report = InitReport(path, str(state.get("spec_name", "another model")), state.get("epoch"))
    mismatched: list[str] = []
    groups = layer_entries(layer_names, list(own))
    for layer, keys in groups.items():
        if not keys:
            continue  # a layer without weights (Flatten, relu...)
        report.sizes[layer] = sum(own[k].numel() for k in keys)
        theirs = {k: source.get(k) for k in keys}
        if all(t is None for t in theirs.values()):
            report.skipped.append(layer)
            continue
        extra = [k for k in source if k.startswith(layer + ".") and k not in own]
        if extra or any(t is None or t.shape != own[k].shape for k, t in theirs.items()):
            mismatched += [f"{k}: this model {_shape(own.get(k))}, {path.name} {_shape(source.get(k))}"
                           for k in keys + extra
                           if k in extra or theirs[k] is None or theirs[k].shape != own[k].shape]
            continue
        report.loaded.append(layer)
    if mismatched:
        raise UserError(f"init: layers of the same name have different shapes in {path}:\n  "
                        + "\n  ".join(mismatched), where=where, code="E114", help=MISMATCH_HELP)
    model.load_state_dict({**own, **{k: source[k] for layer in report.loaded for k in groups[layer]}})
    report.unused = sorted({_layer_of(k) for k in source if k not in own})
    return report


def _layer_of(key: str) -> str:
    """The layer a source key belongs to, as far as its name tells: the path without the tensor's name."""
    return key.rsplit(".", 1)[0] if "." in key else key


def init_model(model: nn.Module, config) -> InitReport | None:
    """The run's `init` setting (RunConfig.init) applied to its freshly built model; None without one."""
    if not config.init:
        return None
    layers = [n.name for n in config.checked.graph.nodes if n.op == "layer"]
    return apply_init(model, layers, config.init, config.base_dir, config.init_where)


def write_report(run_dir: Path, report: InitReport) -> None:
    """init.json in the run folder: each layer loaded or skipped, and what of the source went unused."""
    ckpt_io.write_text(run_dir / "init.json", json.dumps(report.as_json(), indent=2) + "\n")
