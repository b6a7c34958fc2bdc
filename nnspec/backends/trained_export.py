"""Export a trained run: `nnspec compile RUN_DIR|CHECKPOINT.pt --emit onnx|torchscript|safetensors|python`.

A run folder (or one of its checkpoints) names the trained model: the checkpoint holds the
spec's source (its IR hash is verified), the weights, the standardisation fitted on the
training rows and the data's facts (class names, a vocabulary, image decoding).

What each file holds, and how it is checked before it is written:
- onnx: the network with the trained weights and the standardisation as its first nodes
  (`standardize.<input>`: Sub, Div), so raw rows in give what `nnspec predict` gives; the
  facts below in metadata_props `nnspec.export` (JSON). Run in onnxruntime.
- torchscript: the same (standardisation inside), traced; loaded back with torch.jit.load.
- safetensors: the state_dict (loads into `--emit python`'s class), the facts in its metadata;
  read back, loaded into a fresh model.
- python: the model's standalone source (as for a spec); the weights load from the checkpoint.

Each export is run on up to ROWS real rows of the run's validation split (re-made with the
run's seed; `--data` gives other rows) and compared with the checkpoint's PyTorch model as
`nnspec predict` runs it; the largest absolute difference is printed, and above TOLERANCE
(scaled by the outputs' magnitude) nothing is written. Beside every file, `<file>.json` holds
the facts a user needs without nnspec: inputs (shape, dtype, standardisation), what the output
is (probabilities, logits or values) and the class names, the data's fitted state, and the
verification.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..diagnostics import UserError
from ..extras import require

ROWS = 256  # validation rows an export is verified on
BATCH = 100  # rows per call: the last call then has another batch size than the first
TOLERANCE = 1e-5  # times max(1, largest |output|)
SUFFIX = {"onnx": ".onnx", "torchscript": ".torchscript.pt", "safetensors": ".safetensors", "python": ".py"}
CHECKPOINT_CHOICES = ("best", "last")


@dataclass
class TrainedRun:
    checkpoint: Path
    config: Any  # RunConfig of the checkpoint's own spec
    state: dict
    model: Any  # the NnspecModel with the checkpoint's weights, eval mode

    @property
    def checked(self):
        return self.config.checked


def is_run(target: str | Path) -> bool:
    """A run folder or a checkpoint file (what `compile` and `viz --netron` take besides a spec)."""
    path = Path(target)
    return path.is_dir() or path.suffix == ".pt"


def open_run(target: str | Path, which: str | None = None) -> TrainedRun:
    """The checkpoint of a run folder (`which`: best, the default, or last), or a checkpoint
    file, with its own spec checked and its weights loaded."""
    from ..backends.torch_model import build_model
    from ..pipeline import check_text, run_config
    from ..train import checkpoint as ckpt_io

    path = Path(target)
    if path.is_dir():
        path = path / f"{which or 'best'}.pt"
        if not path.is_file():
            raise UserError(f"{target} holds no {path.name}: it is not a run folder of `nnspec train`, or the run "
                            "has not finished an epoch", help="give a run folder (runs/<Model>/<n>) or a checkpoint file")
    elif which is not None:
        raise UserError(f"--checkpoint {which} chooses a checkpoint in a run folder; {target} is a checkpoint already",
                        help="give the run folder with --checkpoint, or the checkpoint file alone")
    state = ckpt_io.load(path)
    source = state.get("spec_source")
    if not isinstance(source, str):
        raise UserError(f"{path} holds no spec source", help="give a checkpoint written by `nnspec train`")
    result = check_text(source, str(path.parent / "spec.nn"))
    if not result.ok:
        raise UserError(f"the spec saved in {path} no longer checks:\n{result.render()}",
                        help="export with the nnspec version that trained it")
    config = run_config(result, defaults=True)  # the checkpoint's own spec: its weights are of it by construction
    model = build_model(config.checked)
    model.load_state_dict(state["model"])
    return TrainedRun(path, config, state, model.eval())


# ---------------------------------------------------------------- rows to verify on
def verification_rows(run: TrainedRun, data: str | None = None, limit: int = ROWS) -> list:
    """Up to `limit` rows as the user hands them to `nnspec predict` (before standardisation):
    the run's validation split (its training rows when it has none), or the rows of `data`."""
    import numpy as np

    from ..pipeline import data_override
    from ..train import images
    from ..train.data import load_data

    source = data_override(data)[0] if data else _run_source(run)
    fold = tuple(run.state["fold"]) if run.state.get("fold") else None
    try:
        dataset = load_data(run.config if source is None else _with_data(run, source),
                            seed=run.state.get("seed"), fold=fold, fitted=run.state.get("data_meta"))
    except UserError as err:  # e.g. a data path relative to the spec's folder, which the run does not record
        raise UserError(f"cannot re-make the rows of {run.checkpoint} to verify the export on: {err.message}",
                        where=err.where, help="give rows to verify on with --data SOURCE, e.g. "
                                              "--data 'images(\"/abs/path\", size=[8, 8])' or --data rows.csv") from None
    split = dataset.val if dataset.val is not None and not data else dataset.train
    if isinstance(split, images.StreamedSplit):
        inputs = next(images.numpy_batches(split, limit))[0]
    else:
        inputs = [x[:limit].cpu().numpy() for x in split.inputs]
    stats = run.state.get("data_stats") or {}
    rows = []
    for name, x in zip(run.model.input_names, inputs):
        if name in stats:  # back to the rows as given: the export standardises them itself
            x = x * stats[name]["std"].numpy() + stats[name]["mean"].numpy()
        rows.append(np.ascontiguousarray(x))
    if not len(rows[0]):
        raise UserError(f"the data of {run.checkpoint} has no rows to verify the export on",
                        help="give rows with --data SOURCE")
    return rows


def _run_source(run: TrainedRun):
    """The source the run trained on, read back from its origin (`synthetic(n=64, seed=0)`,
    `sklearn.iris`, a CSV path with its label column), which `train --data` may have chosen;
    None: the spec's own (text and image sources, whose origin is not written as a source)."""
    from ..pipeline import data_override

    origin = run.state.get("data_origin")
    name, args = run.config.data
    if name == "text" and origin and Path(origin).is_file():  # its origin: the file as training found it
        return name, {**args, "path": str(Path(origin).absolute())}
    if not origin or name in ("text", "images"):
        return None
    try:
        name, args = data_override(origin)[0]
    except UserError:
        return None
    if name == "csv" and run.state.get("data_target"):
        args = {**args, "target": run.state["data_target"]}
    return name, args


def _with_data(run: TrainedRun, source):
    import dataclasses

    return dataclasses.replace(run.config, data=source)


def standardize(run: TrainedRun, rows: list) -> list:
    """What `nnspec predict` does to rows before the model (run.standardize_inputs)."""
    from ..train.run import standardize_inputs

    return standardize_inputs(rows, run.model.input_names, run.state)


def reference_outputs(run: TrainedRun, rows: list):
    """The checkpoint's PyTorch outputs for `rows`, batch by batch, as predict computes them."""
    import numpy as np
    import torch

    inputs = standardize(run, rows)
    outs = []
    with torch.no_grad():
        for s in range(0, len(rows[0]), BATCH):
            outs.append(run.model(*[torch.from_numpy(np.ascontiguousarray(x[s:s + BATCH])) for x in inputs]).numpy())
    return np.concatenate(outs)


def compare(run: TrainedRun, rows: list, produce, what: str) -> float:
    """max |produce(batch) - checkpoint| over the rows; a UserError above the tolerance."""
    import numpy as np

    expected = reference_outputs(run, rows)
    got = np.concatenate([produce([x[s:s + BATCH] for x in rows]) for s in range(0, len(rows[0]), BATCH)])
    if got.shape != expected.shape:
        raise UserError(f"the {what} export gives outputs of shape {got.shape}, the checkpoint {expected.shape}; "
                        "nothing was written", help="please report this as a bug of nnspec")
    diff = float(np.abs(got - expected).max()) if expected.size else 0.0
    allowed = TOLERANCE * max(1.0, float(np.abs(expected).max()) if expected.size else 1.0)
    if not diff <= allowed:
        raise UserError(f"the {what} export differs from the checkpoint by {diff:.3g} on the run's rows "
                        f"(allowed {allowed:.3g}); nothing was written", help="please report this as a bug of nnspec")
    return diff


# ---------------------------------------------------------------- what the exported file needs beside it
def facts(run: TrainedRun, emitted: str, path: Path, rows: int, diff: float | None) -> dict[str, Any]:
    """The machine-readable facts written beside an export (`<file>.json`) and into it."""
    checked, state = run.checked, run.state
    stats = state.get("data_stats") or {}
    meta = dict(state.get("data_meta") or {})
    inputs = []
    for name in checked.graph.inputs:
        t = checked.graph.node(name).out
        entry = {"name": name, "shape": ["batch", *[d if d is not None else "steps" for d in t.shape]],
                 "dtype": "int64" if t.dtype == "int" else "float32"}
        if name in stats:
            entry["standardize"] = {"mean": stats[name]["mean"].tolist(), "std": stats[name]["std"].tolist(),
                                    "inside": emitted in ("onnx", "torchscript"),
                                    "formula": "(x - mean) / std, per feature"}
        inputs.append(entry)
    out = checked.graph.output_node.out
    output = {"name": "output", "shape": ["batch", *[d if d is not None else "steps" for d in out.shape]],
              "is": checked.output_is, "class_names": meta.pop("class_names", None)}
    return {"format": "nnspec.export/1", "model": checked.spec.name, "emitted": emitted, "file": path.name,
            "checkpoint": run.checkpoint.name, "epoch": state.get("epoch"), "inputs": inputs, "output": output,
            "data": {"origin": state.get("data_origin"), "target": state.get("data_target"), **meta},
            "verified": None if diff is None else {"rows": rows, "max_abs_diff": diff,
                                                  "against": f"{run.checkpoint.name} in PyTorch"}}


def write_facts(path: Path, info: dict) -> Path:
    from ..fsutil import atomic_write_text

    side = path.with_name(path.name + ".json")
    atomic_write_text(side, json.dumps(info, indent=2) + "\n")
    return side


# ---------------------------------------------------------------- the formats
def export_onnx(run: TrainedRun, path: Path, rows: list) -> dict[str, Any]:
    """The trained network as ONNX, standardisation inside, verified in onnxruntime on `rows`."""
    onnx = require("onnx")
    ort = require("onnxruntime")
    from . import onnx_export as ox
    from ..fsutil import atomic_path

    proto = ox.build_proto(run.checked, run.config.source, run.model, str(run.checkpoint.parent / "spec.nn"))
    standardize_inside(proto, run.state.get("data_stats") or {})
    with atomic_path(path) as tmp:
        onnx.save_model(proto, str(tmp), save_as_external_data=False)
        onnx.checker.check_model(str(tmp), full_check=True)
        session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        names = [i.name for i in session.get_inputs()]
        diff = compare(run, rows, lambda xs: session.run(None, dict(zip(names, xs)))[0], "ONNX")
        info = facts(run, "onnx", path, len(rows[0]), diff)
        ox.add_metadata(proto, {"nnspec.export": json.dumps(info)})  # the same facts inside the file
        onnx.save_model(proto, str(tmp), save_as_external_data=False)
    return info


def standardize_inside(proto, stats: dict) -> None:
    """Sub/Div nodes (`standardize.<input>`) between each standardised input and its readers."""
    from onnx import helper, numpy_helper

    first = []
    for name, s in stats.items():
        inner = f"{name}.standardized"
        for node in proto.graph.node:
            for i, x in enumerate(node.input):
                if x == name:
                    node.input[i] = inner
        mean, std = f"standardize.{name}.mean", f"standardize.{name}.std"
        proto.graph.initializer.extend([numpy_helper.from_array(s["mean"].numpy(), mean),
                                        numpy_helper.from_array(s["std"].numpy(), std)])
        first += [helper.make_node("Sub", [name, mean], [f"{name}.centered"], name=f"standardize.{name}/Sub"),
                  helper.make_node("Div", [f"{name}.centered", std], [inner], name=f"standardize.{name}")]
    if first:
        nodes = first + list(proto.graph.node)
        del proto.graph.node[:]
        proto.graph.node.extend(nodes)
        from .onnx_tidy import infer_edge_shapes

        infer_edge_shapes(proto)


def deployable_module(run: TrainedRun):
    """The trained model behind its standardisation, as one nn.Module (for TorchScript)."""
    import torch

    stats = run.state.get("data_stats") or {}

    class Deployable(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net
            self.standardized = [n in stats for n in net.input_names]
            for i, name in enumerate(net.input_names):
                if name in stats:
                    self.register_buffer(f"mean_{i}", stats[name]["mean"].clone())
                    self.register_buffer(f"std_{i}", stats[name]["std"].clone())

        def forward(self, *inputs):
            xs = [(x - getattr(self, f"mean_{i}")) / getattr(self, f"std_{i}") if self.standardized[i] else x
                  for i, x in enumerate(inputs)]
            return self.net(*xs)

    return Deployable(run.model).eval()


def export_torchscript(run: TrainedRun, path: Path, rows: list) -> dict[str, Any]:
    """torch.jit.trace of the deployable module (the export-friendly forwards of the ONNX export:
    no size of the traced batch is frozen), loaded back and verified on `rows`."""
    import warnings

    import numpy as np
    import torch

    from . import onnx_export as ox
    from ..fsutil import atomic_path

    module = deployable_module(run)
    example = tuple(torch.from_numpy(np.ascontiguousarray(x[:2])) for x in rows)
    with ox.export_friendly(run.model, ox.fixed_size_layers(run.checked)), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on Python values it keeps as constants
        traced = torch.jit.trace(module, example, check_trace=False)
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # PyTorch's notice that TorchScript is deprecated (docs say so)
        torch.jit.save(traced, str(tmp))
        loaded = torch.jit.load(str(tmp))

        def produce(xs):
            with torch.no_grad():
                return loaded(*[torch.from_numpy(np.ascontiguousarray(x)) for x in xs]).numpy()

        diff = compare(run, rows, produce, "TorchScript")
    return facts(run, "torchscript", path, len(rows[0]), diff)


def export_safetensors(run: TrainedRun, path: Path, rows: list) -> dict[str, Any]:
    """The state_dict as safetensors (the facts in its metadata), read back into a fresh model."""
    st = require("safetensors.torch")
    import numpy as np
    import torch

    from ..backends.torch_model import build_model
    from ..fsutil import atomic_path

    tensors = {k: v.detach().contiguous() for k, v in run.model.state_dict().items()}
    with atomic_path(path) as tmp:
        info = facts(run, "safetensors", path, len(rows[0]), None)
        st.save_file(tensors, str(tmp), metadata={"nnspec.export": json.dumps(info)})
        fresh = build_model(run.checked)
        fresh.load_state_dict(st.load_file(str(tmp)))
        fresh.eval()
        stats = run.state.get("data_stats") or {}

        def produce(xs):
            xs = standardize(run, xs) if stats else xs
            with torch.no_grad():
                return fresh(*[torch.from_numpy(np.ascontiguousarray(x)) for x in xs]).numpy()

        diff = compare(run, rows, produce, "safetensors")
        info = facts(run, "safetensors", path, len(rows[0]), diff)
        st.save_file(tensors, str(tmp), metadata={"nnspec.export": json.dumps(info)})
    return info


EXPORTERS = {"onnx": export_onnx, "torchscript": export_torchscript, "safetensors": export_safetensors}


def export(target: str | Path, emit: str, output: str | None = None, which: str | None = None,
           data: str | None = None) -> dict[str, Any]:
    """Export a run's checkpoint as `emit`; returns the facts (with `path` and `sidecar`)."""
    run = open_run(target, which)
    path = Path(output) if output else run.checkpoint.with_suffix(SUFFIX[emit])
    if emit == "python":
        from ..fsutil import atomic_write_text
        from .python_source import ejected

        atomic_write_text(path, ejected(run.checked, str(run.checkpoint.parent / "spec.nn"))[1])
        info = facts(run, "python", path, 0, None)
    else:
        info = EXPORTERS[emit](run, path, verification_rows(run, data))
    return {**info, "path": str(path), "sidecar": str(write_facts(path, info))}


def emit(target: str, emit_as: str, output: str | None, which: str | None, data: str | None) -> None:
    """`nnspec compile RUN_DIR --emit ...`: export and say what was written and how it was verified."""
    import click

    info = export(target, emit_as, output, which, data)
    click.echo(f"wrote {info['path']} (the trained weights of {info['checkpoint']}, epoch {info['epoch']})")
    if info["verified"]:
        v = info["verified"]
        click.echo(f"verified on {v['rows']} rows of the run's data: largest difference from the checkpoint "
                   f"{v['max_abs_diff']:.1e}")
    click.echo(f"wrote {info['sidecar']} (inputs, standardisation, output, class names)")


def serve_run(target: str, port: int, browse: bool, out_dir: str | None = None, port_given: bool = True,
              block: bool = True):
    """`nnspec viz --netron RUN_DIR`: the trained model's verified ONNX (best.onnx in the run
    folder, or in `out_dir`), served with Netron."""
    from .onnx_export import serve_netron

    def make_file() -> str:
        run = open_run(target)
        folder = Path(out_dir) if out_dir else run.checkpoint.parent
        path = folder / run.checkpoint.with_suffix(SUFFIX["onnx"]).name
        info = export_onnx(run, path, verification_rows(run))
        write_facts(path, info)
        return str(path)

    return serve_netron(None, port=port, browse=browse, out_dir=out_dir, block=block, port_given=port_given,
                        make_file=make_file)
