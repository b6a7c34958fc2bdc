"""nnspec: declare a neural network in a `.nn` file; check, draw, compile, train and tune it.

The public API (docs/api.md) is `Spec`, `Run` and `Predictions` (nnspec.api), with the errors
they raise: `UserError` (bad input outside a spec) and `SpecError` (a spec with errors). They
load on first use, so `import nnspec` stays fast and never imports torch.
"""
TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (startup time)
if TYPE_CHECKING:  # pragma: no cover
    from typing import Any

    from .api import Predictions, Run, Spec
    from .diagnostics import Diagnostic, SpecError, UserError

__all__ = ["Spec", "Run", "Predictions", "Diagnostic", "SpecError", "UserError", "__version__"]

_EXPORTS = {"Spec": "api", "Run": "api", "Predictions": "api",
            "Diagnostic": "diagnostics", "SpecError": "diagnostics", "UserError": "diagnostics"}


def __getattr__(name: str) -> "Any":
    """PEP 562: the API's names load when first asked for (nnspec.api imports the checker)."""
    if name == "__version__":
        value = _version()
    elif name in _EXPORTS:
        from importlib import import_module

        value = getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    else:
        raise AttributeError(f"module 'nnspec' has no attribute {name!r}")
    globals()[name] = value  # asked once
    return value


def __dir__() -> "list[str]":
    return sorted({*globals(), *__all__})


def _version() -> str:
    """The installed package's version; from a source checkout that is not installed, pyproject's."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("nnspec")
    except PackageNotFoundError:
        return _pyproject_version()


def _pyproject_version() -> str:
    import re
    from pathlib import Path

    pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
    try:
        found = re.search(r'^version\s*=\s*"([^"]+)"', pyproject.read_text(encoding="utf-8"), re.MULTILINE)
    except OSError:
        found = None
    return found.group(1) if found else "0+unknown"
