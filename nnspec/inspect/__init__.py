"""`nnspec inspect RUN_DIR --input FILE [--index i ...] [--target CLASS] [-o OUT_DIR]`: what a
trained network computes inside, and what its prediction for a row depends on, as PNGs and one
index.html that lays them out with the layers' names.

For each row asked for (OUT_DIR/row_<i>/):
- input.png (image inputs) and maps_<layer>.png: every 2-D convolutional layer's feature maps
  for that row, after the activation the spec writes behind the layer (probes.py);
- image inputs: saliency.png (|gradient| of the target's score, the largest over channels) and
  gradcam.png (Grad-CAM on the last convolutional layer), each overlaid on the input;
- other inputs ([F] features, [T, F] sequences): integrated_gradients.png, one bar per feature
  named from the CSV header (a matrix for [T, F]);
- attributions.npz: the numbers behind the pictures; attributions.json: prediction and target.
Once: filters_<layer>.png, the first convolutional layer's kernels.

The target is the predicted class, or --target (a class id or name); a regression model's
target is an output (--target k, default 0): its value itself is attributed. See attribution.py
for the methods (Captum) and probes.py for which score is attributed.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..diagnostics import UserError

from . import figures
from .page import Section, write_page


@dataclass
class Inspection:
    out_dir: Path
    files: list[Path] = field(default_factory=list)  # every picture, then index.html
    notes: list[str] = field(default_factory=list)
    rows: list[dict] = field(default_factory=list)  # what attributions.json says of each row


def default_out_dir(target: str | Path) -> Path:
    path = Path(target)
    return (path if path.is_dir() else path.parent) / "inspect"


def inspect_run(target: str | Path, input_path: str | Path, indices=(0,), *, target_class: str | None = None,
                out_dir: str | Path | None = None, checkpoint: str | None = None, device: str = "auto") -> Inspection:
    """Write the pictures and index.html for rows `indices` of `input_path`, by the run (folder or
    checkpoint) `target`; returns what was written."""
    import torch

    from .. import fsutil
    from ..backends.trained_export import open_run
    from ..train.run import class_names_of, resolve_device
    from .probes import Scorer, conv_layers, probed_forward, score_kind
    from .rows import read_rows

    run = open_run(target, checkpoint)
    checked, name = run.checked, run.config.name
    input_rank = _require_supported(checked, name)
    indices = sorted(set(indices))
    dev = resolve_device(device)
    rows = read_rows(run, input_path, indices)
    layers, notes = conv_layers(checked.graph)
    kind = checked.task.kind if checked.task else "regression"
    model = run.model.to(dev)
    probed, probes = probed_forward(model, checked, layers, logits=model.fused_activation is not None)
    scorer = Scorer(probed, binary=kind == "binary").eval()
    x = torch.from_numpy(rows.model_input).float().to(dev)
    with torch.no_grad():
        outputs = model(x).reshape(len(x), -1).float().cpu()
    classes = class_names_of(run.state)
    chosen = parse_target(target_class, kind, outputs.shape[1], classes, name)
    out = fsutil.make_dir(Path(out_dir) if out_dir else default_out_dir(target))
    report = Inspection(out, notes=notes + _notes(layers, kind, input_rank, chosen))
    ctx = _Context(scorer, probes, layers, kind, classes, score_kind(model, checked), input_rank, rows,
                   checked.output_is)
    sections = [_filters(out, model, layers, report)] if layers else []
    for r, index in enumerate(indices):
        row_target = chosen if chosen is not None else _predicted(outputs[r], kind)
        sections.append(_inspect_row(ctx, r, x[r:r + 1], outputs[r], row_target, out, report))
    intro = [("model", name), ("checkpoint", str(run.checkpoint)), ("input", str(input_path)),
             ("attributed", f"the target's {ctx.score_kind} ({'--target ' + target_class if target_class else 'the prediction'})")]
    write_page(out / "index.html", f"nnspec inspect: {name}", intro, [s for s in sections if s], report.notes)
    report.files.append(out / "index.html")
    return report


@dataclass
class _Context:
    scorer: object
    probes: dict
    layers: list
    kind: str
    classes: list[str] | None
    score_kind: str
    input_rank: int
    rows: object
    output_is: str  # probabilities | logits | values: what the network's outputs are


def _require_supported(checked, name: str) -> int:
    """The input's rank; a UserError for what inspect cannot explain."""
    graph = checked.graph  # a GAN never gets here: open_run's build_model refuses a spec with networks
    if len(graph.inputs) != 1:
        raise UserError(f"nnspec inspect explains models with one input; {name} has {len(graph.inputs)} "
                        f"({', '.join(graph.inputs)}), which is not supported",
                        help="inspect a single-input model, or use `nnspec predict --tensor` for inner values")
    node = graph.node(graph.inputs[0])
    if node.out.dtype == "int":
        raise UserError(f"nnspec inspect attributes to float inputs; {name}'s input {node.name} holds token ids "
                        "(int[...]), which have no gradient: not supported",
                        help="inspect a model whose input is float features or images")
    out_shape = tuple(graph.output_node.out.shape)
    if len(out_shape) != 1:
        raise UserError(f"nnspec inspect explains one score per row; {name}'s output is "
                        f"[{', '.join('?' if d is None else str(d) for d in out_shape)}] (a value per position): "
                        "not supported", help="inspect a classifier or regressor with an output of shape [K]")
    rank = len(node.out.shape)
    if rank not in (1, 2, 3) or None in node.out.shape:
        raise UserError(f"nnspec inspect reads inputs [F], [T, F] or images [C, H, W]; {name}'s input "
                        f"{node.name} is {list(node.out.shape)}: not supported",
                        help="inspect a model with a fixed-size input of rank 1 to 3")
    return rank


def parse_target(text: str | None, kind: str, outputs: int, classes: list[str] | None, name: str) -> int | None:
    """--target as an index into the scores: a class id or name, or a regression output's number."""
    if text is None:
        return None if kind != "regression" else 0
    count = 2 if kind == "binary" else outputs
    if kind != "regression" and classes and text in classes and len(classes) == count:
        return classes.index(text)
    if text.strip().isdigit() and int(text) < count:
        return int(text)
    if kind == "regression":
        raise UserError(f"--target {text}: {name} is a regression model with {count} output(s); "
                        f"--target picks one, 0 to {count - 1}", help="give --target 0 (the default)")
    named = f" or its name ({', '.join(classes)})" if classes and len(classes) == count else ""
    raise UserError(f"--target {text} is not a class of {name}", help=f"give a class id 0 to {count - 1}{named}")


def _predicted(output, kind: str) -> int:
    if kind == "binary":
        return int(float(output[0]) >= 0.5)
    return int(output.argmax()) if kind == "multiclass" else 0


def _notes(layers, kind: str, input_rank: int, chosen) -> list[str]:
    notes = []
    if not layers:
        notes.append("no 2-D convolutional layer: no feature maps, filters or Grad-CAM")
    if kind == "regression":
        notes.append(f"a regression model: the attributions explain output_{chosen} itself (what raises or "
                     "lowers the value); --target k picks another output")
    return notes


def _class_text(index: int, kind: str, classes) -> str:
    if kind == "regression":
        return f"output_{index}"
    named = classes and index < len(classes)
    return f"{index} ({classes[index]})" if named else str(index)


def _filters(out: Path, model, layers, report: Inspection) -> Section | None:
    first = layers[0]
    weight = getattr(model.get_submodule(first.name), "weight", None)
    if weight is None or weight.ndim != 4:
        report.notes.append(f"{first.name} ({first.kind}) has no single kernel tensor to draw: filters skipped")
        return None
    w = weight.detach().float().cpu().numpy()
    path = out / f"filters_{first.name}.png"
    figures.write_filters(path, w, f"{first.name}: {w.shape[0]} filters {w.shape[2]}x{w.shape[3]}")
    report.files.append(path)
    return Section(f"Filters of the first convolutional layer, {first.name}", pictures=[(first.name, path.name)])


def _inspect_row(ctx: _Context, r: int, x, output, target: int, out: Path, report: Inspection) -> Section:
    """The pictures of one row; its section of the page."""
    from .. import fsutil
    from . import attribution as A

    rows = ctx.rows
    folder = fsutil.make_dir(out / f"row_{rows.indices[r]}")
    raw = rows.raw[r]
    arrays = {"input": raw, "model_input": x[0].detach().cpu().numpy()}
    pictures: list[tuple[str, str]] = []

    def put(file: str, caption: str, draw) -> None:
        draw(folder / file)
        report.files.append(folder / file)
        pictures.append((caption, f"{folder.name}/{file}"))

    scores, maps = A.feature_maps(ctx.scorer, ctx.probes, x)
    arrays["scores"] = scores[0].cpu().numpy()
    image = ctx.input_rank == 3
    if image:
        put("input.png", "input", lambda p: figures.write_input(p, raw, rows.names[r]))
    for layer in ctx.layers:
        m = maps[layer.name][0].cpu().numpy()
        arrays[f"maps/{layer.name}"] = m
        put(f"maps_{layer.name}.png", f"{layer.label}: {m.shape[0]} feature maps {m.shape[1]}x{m.shape[2]}",
            lambda p, m=m, layer=layer: figures.write_maps(p, m, f"{layer.label} ({rows.names[r]})"))
    what = f"{ctx.score_kind} of {_class_text(target, ctx.kind, ctx.classes)}"
    facts = _row_facts(ctx, output, target)
    if image:
        sal = A.saliency(ctx.scorer, x, target)[0].cpu().numpy()
        arrays["saliency"] = sal
        put("saliency.png", f"saliency: |d {what} / d input|",
            lambda p: figures.write_heatmap(p, raw, sal.max(0), f"saliency of the {what}"))
        if ctx.layers:
            last = ctx.layers[-1]
            coarse, cam = (t[0, 0].cpu().numpy() for t in A.grad_cam(ctx.scorer, ctx.probes[last.name], x, target))
            arrays["gradcam_coarse"], arrays["gradcam"] = coarse, cam
            if not cam.any():
                report.notes.append(f"{rows.names[r]}: Grad-CAM on {last.name} is zero everywhere (no map of "
                                    f"that layer raises the {what})")
            put("gradcam.png", f"Grad-CAM on {last.label}",
                lambda p: figures.write_heatmap(p, raw, cam, f"Grad-CAM on {last.name}, {what}", coarse))
    else:
        ig, delta = A.integrated_gradients(ctx.scorer, x, target)
        values = ig[0].cpu().numpy()
        arrays["integrated_gradients"] = values
        facts.append(("integrated gradients: sum, convergence delta", f"{values.sum():.6g}, {float(delta[0]):.3g}"))
        title = f"integrated gradients of the {what} ({rows.names[r]})"
        if ctx.input_rank == 1:
            names = rows.feature_names if rows.feature_names and len(rows.feature_names) == len(values) else \
                [f"x[{i}]" for i in range(len(values))]
            put("integrated_gradients.png", "integrated gradients per feature",
                lambda p: figures.write_bars(p, values, names, title))
        else:
            put("integrated_gradients.png", "integrated gradients per step and feature",
                lambda p: figures.write_matrix(p, values, title, ("step", "feature")))
    summary = _row_summary(ctx, r, output, target, arrays)
    _write_numbers(folder, arrays, summary, report)
    heading = rows.names[r] if rows.names[r] == f"row {rows.indices[r]}" else f"{rows.names[r]} (row {rows.indices[r]})"
    return Section(heading, facts, pictures)


def _row_facts(ctx: _Context, output, target: int) -> list[tuple[str, str]]:
    if ctx.kind == "regression":
        return [("outputs", ", ".join(f"{float(v):.6g}" for v in output)), ("attributed", f"output_{target}")]
    predicted = _predicted(output, ctx.kind)
    p = float(output[0]) if ctx.kind == "binary" else float(output[predicted])
    shown = "p(class 1)" if ctx.kind == "binary" else \
        "its probability" if ctx.output_is == "probabilities" else "its logit"
    return [("predicted", _class_text(predicted, ctx.kind, ctx.classes)), (shown, f"{p:.4f}"),
            ("target", _class_text(target, ctx.kind, ctx.classes))]


def _row_summary(ctx: _Context, r: int, output, target: int, arrays: dict) -> dict:
    """attributions.json of a row: the model's outputs, the prediction, the target and its score."""
    rows = ctx.rows
    summary = {"row": rows.indices[r], "name": rows.names[r], "outputs": [float(v) for v in output],
               "score": ctx.score_kind, "target": target, "target_score": float(arrays["scores"][target])}
    if ctx.kind != "regression":
        summary["predicted"] = _predicted(output, ctx.kind)
        if ctx.classes and summary["predicted"] < len(ctx.classes):
            summary["predicted_label"] = ctx.classes[summary["predicted"]]
        if ctx.classes and target < len(ctx.classes):
            summary["target_label"] = ctx.classes[target]
    if "integrated_gradients" in arrays:
        values = arrays["integrated_gradients"]
        names = rows.feature_names if rows.feature_names and len(rows.feature_names) == values.size else None
        summary["integrated_gradients"] = (dict(zip(names, map(float, values))) if names
                                           else [float(v) for v in values.reshape(-1)])
    return summary


def _write_numbers(folder: Path, arrays: dict, summary: dict, report: Inspection) -> None:
    import numpy as np

    from .. import fsutil

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **{k: np.asarray(v, dtype=np.float32) for k, v in arrays.items()})

    fsutil.atomic_write(folder / "attributions.npz", write)
    report.rows.append(summary)
    fsutil.atomic_write_text(folder / "attributions.json", json.dumps(summary, indent=2) + "\n")
