"""Optional dependencies: import one, or tell the user which extra to install.

`pip install nnspec` brings what `check`, `fmt`, `summary`, `viz`, `compile --emit json|python`,
`train`, `evaluate`, `predict` and `plot` need. The rest come with an extra
(`[project.optional-dependencies]` in pyproject.toml):

| extra    | packages                        | enables                                   |
|----------|---------------------------------|-------------------------------------------|
| `onnx`   | onnx, onnxscript, onnxruntime   | `nnspec compile --emit onnx`              |
| `netron` | netron, and the `onnx` extra    | `nnspec viz --netron`                     |
| `tune`   | optuna                          | `nnspec tune`                             |
| `augment`| kornia                          | the `augment [...]` train setting         |
| `safetensors` | safetensors                | `nnspec compile RUN_DIR --emit safetensors` |
| `inspect`| captum                          | `nnspec inspect` (saliency, Grad-CAM, integrated gradients) |
| `logs`   | tensorboard, mlflow-skinny      | `nnspec train --log tensorboard|mlflow`   |
| `lsp`    | pygls                           | `nnspec lsp` (editors' language server)   |
| `postgres`| psycopg, and the `tune` extra  | `nnspec tune --storage postgresql://...`  |
| `parquet`| pyarrow                         | the `parquet(...)` data source            |
| `browser`| playwright (tests only)         | the headless-Chromium check of `viz --netron` |
| `all`    | all of the above                |                                           |

`require("optuna")` returns the module, or raises a UserError (one line, exit status 1) that
names the extra and the pip command. Import these packages only through it.
"""
from __future__ import annotations

import importlib
from types import ModuleType

from .diagnostics import UserError, first_line

CODE = "E901"

# top-level package -> (how it is named to the user, its extra, the feature that needs it by default)
PACKAGES: dict[str, tuple[str, str, str]] = {
    "optuna": ("Optuna", "tune", "`nnspec tune`"),
    "onnx": ("onnx", "onnx", "`nnspec compile --emit onnx`"),
    "onnxscript": ("onnxscript", "onnx", "`nnspec compile --emit onnx`"),
    "onnxruntime": ("onnxruntime", "onnx", "`nnspec compile --emit onnx`"),
    "netron": ("Netron", "netron", "`nnspec viz --netron`"),
    "kornia": ("kornia", "augment", "the `augment` train setting"),
    "safetensors": ("safetensors", "safetensors", "`nnspec compile RUN_DIR --emit safetensors`"),
    "captum": ("Captum", "inspect", "`nnspec inspect`"),
    "tensorboard": ("TensorBoard", "logs", "`--log tensorboard`"),
    "mlflow": ("MLflow", "logs", "`--log mlflow`"),
    "pygls": ("pygls", "lsp", "`nnspec lsp`"),
    "psycopg": ("psycopg", "postgres", "`nnspec tune --storage postgresql://...`"),
    "pyarrow": ("pyarrow", "parquet", "the `parquet(...)` data source"),
}


def install_command(extra: str) -> str:
    return f"pip install 'nnspec[{extra}]'"


def require(module: str, extra: str | None = None, feature: str | None = None) -> ModuleType:
    """Import `module` (dotted names too) and return it; if it is missing or broken, raise a
    UserError naming `feature`, the package and `pip install 'nnspec[extra]'`."""
    top = module.partition(".")[0]
    if top not in PACKAGES:  # only nnspec's own optional packages are ever imported by name
        raise ValueError(f"extras.require: {module!r} is not an optional package of nnspec")
    label, default_extra, default_feature = PACKAGES[top]
    extra, feature = extra or default_extra, feature or default_feature
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").partition(".")[0]
        if missing == top or missing in PACKAGES:  # it, or a sibling it imports, is not installed
            name = PACKAGES.get(missing, (missing,))[0]
            raise UserError(f"{feature} needs {name}, which is not installed; install it with: "
                            f"{install_command(extra)}", code=CODE) from None
        raise _broken(label, feature, extra, exc) from None
    except Exception as exc:  # installed but broken: a missing native library, a version mismatch
        raise _broken(label, feature, extra, exc) from None


def _broken(label: str, feature: str, extra: str, exc: Exception) -> UserError:
    return UserError(f"{feature} needs {label}, which is installed but cannot be imported ({first_line(exc)}); "
                     f"reinstall it with: pip install --force-reinstall 'nnspec[{extra}]'",
                     code=CODE)
