"""What the `images(...)` data source needs of its arguments and of the model, said once: the
catalog entry validates `size` with `size_problem`, the checker reports `image_source_problem`
for a spec's source (E123), and loading refuses the same for a `--data` source."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

CHANNELS = {"gray": 1, "rgb": 3}  # the input's channels for each `color`


def size_problem(size) -> str | None:
    """Why `size` is not [H, W] (two whole numbers >= 1), or None."""
    if isinstance(size, list) and len(size) == 2:
        return None
    return "a list of two whole numbers [H, W]"


def _shape_text(shape: Sequence, dtype: str) -> str:
    return ("int" if dtype == "int" else "") + "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def image_source_problem(args: Mapping[str, Any], inputs: Sequence[tuple[str, tuple, str]]) -> tuple[str, str] | None:
    """Why the images(...) source `args` cannot feed a model with `inputs` ((name, shape, dtype)
    each), as (message, help), or None: it gives one image [C, H, W] per sample, C from `color`."""
    size, color = args.get("size"), args.get("color") or "gray"
    if size_problem(size) is not None or color not in CHANNELS:
        return None  # reported by the argument's own check
    want = (CHANNELS[color], int(size[0]), int(size[1]))
    shown = f"[{want[0]}, {want[1]}, {want[2]}] ({color}, size=[{want[1]}, {want[2]}])"
    if len(inputs) != 1:
        got = ", ".join(f"'{n}' {_shape_text(s, d)}" for n, s, d in inputs) or "none"
        return (f"images(...) gives one image {shown} per sample to one input; the model's inputs are {got}",
                "declare one input, e.g. `input image: " + f"[{want[0]}, {want[1]}, {want[2]}]`")
    name, shape, dtype = inputs[0]
    if tuple(shape) != want or dtype == "int":
        other = "rgb" if color == "gray" else "gray"
        fix = f"declare `input {name}: [{want[0]}, {want[1]}, {want[2]}]`"
        if len(shape) == 3 and shape[0] in (1, 3) and None not in shape and dtype != "int":
            fix += (f", or read the images as size=[{shape[1]}, {shape[2]}]"
                    + (f", color={other}" if shape[0] != want[0] else ""))
        return (f"images(...) reads {shown} but input '{name}' is {_shape_text(shape, dtype)}", fix)
    return None
