"""Optional dependencies: a command whose extra is missing says which one to install, in one
line, with exit status 1; the core commands work with every optional package missing.

A package is "missing" when the command runs in a subprocess that first puts None in
sys.modules under its name, so that `import name` raises ModuleNotFoundError as it would
if the package were not installed."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from nnspec.diagnostics import UserError
from nnspec.extras import PACKAGES, require

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
OPTIONAL = ("optuna", "onnx", "onnxscript", "onnxruntime", "netron")


def nnspec(*args: str, missing: tuple[str, ...] = (), timeout: float = 120) -> subprocess.CompletedProcess:
    """Run the CLI as a user would, with the packages in `missing` unimportable."""
    program = (f"import sys\nfor name in {list(missing)!r}:\n    sys.modules[name] = None\n"
               "from nnspec.cli import main\nmain(prog_name='nnspec')\n")
    return subprocess.run([sys.executable, "-c", program, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def assert_asks_for(proc: subprocess.CompletedProcess, extra: str, *words: str) -> None:
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
    err = proc.stderr.strip()
    assert "Traceback" not in err and "internal error" not in err, err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("error[E901]: "), err
    assert f"install it with: pip install 'nnspec[{extra}]'" in err, err
    for word in words:
        assert word in err, (word, err)


# ---------------------------------------------------------------- each extra, missing
def test_tune_without_optuna_names_the_tune_extra():
    proc = nnspec("tune", str(SPECS / "tune_mlp.nn"), "--trials", "1", missing=("optuna",))
    assert_asks_for(proc, "tune", "`nnspec tune`", "Optuna")


@pytest.mark.parametrize("package", ["onnx", "onnxscript", "onnxruntime"])
def test_compile_onnx_without_each_onnx_package_names_the_onnx_extra(package, tmp_path):
    out = tmp_path / "model.onnx"
    proc = nnspec("compile", str(SPECS / "iris_mlp.nn"), "--emit", "onnx", "-o", str(out), missing=(package,))
    assert_asks_for(proc, "onnx", "`nnspec compile --emit onnx`", package)
    assert not out.exists()  # refused before exporting anything


@pytest.mark.parametrize("package", ["netron", "onnx", "onnxruntime"])
def test_viz_netron_without_netron_or_onnx_names_the_netron_extra(package, tmp_path):
    # were the package not refused, the command would serve until the timeout: that fails the test too
    proc = nnspec("viz", str(SPECS / "iris_mlp.nn"), "--netron", "--no-browser", "--port", "0",
                  "--out", str(tmp_path), missing=(package,), timeout=60)
    assert_asks_for(proc, "netron", "`nnspec viz --netron`")
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- the core, with every extra missing
@pytest.mark.parametrize("args", [
    ("--help",),
    ("--version",),
    ("check", "specs/iris_mlp.nn", "specs/tune_mlp.nn", "specs/tiny_resnet.nn"),
    ("summary", "specs/iris_mlp.nn"),
    ("compile", "specs/iris_mlp.nn", "--emit", "json"),
    ("fmt", "specs/iris_mlp.nn"),
    ("tune", "--help"),
    ("viz", "--help"),
], ids=lambda a: " ".join(a))
def test_core_commands_work_without_any_extra(args):
    proc = nnspec(*args, missing=OPTIONAL)
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr and "E901" not in proc.stderr


def test_compile_python_without_any_extra(tmp_path):  # torch, without onnx or onnxscript
    out = tmp_path / "model.py"
    proc = nnspec("compile", "specs/iris_mlp.nn", "--emit", "python", "-o", str(out), missing=OPTIONAL)
    assert proc.returncode == 0, proc.stderr
    assert "class " in out.read_text()


def test_check_without_any_extra_prints_ok():
    proc = nnspec("check", "specs/iris_mlp.nn", missing=OPTIONAL)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("specs/iris_mlp.nn: ok ("), proc.stdout


# ---------------------------------------------------------------- require() itself
def test_require_returns_the_module():
    import optuna

    assert require("optuna") is optuna


def test_require_of_a_missing_package_raises_one_user_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)
    with pytest.raises(UserError) as info:
        require("optuna")
    err = info.value
    assert err.code == "E901" and err.help is None
    assert err.render() == ("error[E901]: `nnspec tune` needs Optuna, which is not installed; "
                            "install it with: pip install 'nnspec[tune]'")


def test_require_of_a_submodule_blames_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)
    monkeypatch.delitem(sys.modules, "optuna.trial", raising=False)
    with pytest.raises(UserError, match=r"needs Optuna, which is not installed.*nnspec\[tune\]"):
        require("optuna.trial")


def test_require_takes_the_callers_extra_and_feature(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(UserError) as info:
        require("onnx", "netron", "`nnspec viz --netron`")
    assert info.value.message == ("`nnspec viz --netron` needs onnx, which is not installed; "
                                  "install it with: pip install 'nnspec[netron]'")


def test_a_broken_install_is_not_called_missing(monkeypatch, tmp_path):
    (tmp_path / "optuna").mkdir()
    (tmp_path / "optuna" / "__init__.py").write_text("raise OSError('libfoo.so: cannot open shared object file')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "optuna", raising=False)
    with pytest.raises(UserError) as info:
        require("optuna")
    message = info.value.message
    assert "installed but cannot be imported (libfoo.so: cannot open shared object file)" in message
    assert "pip install --force-reinstall 'nnspec[tune]'" in message


def test_every_optional_package_has_an_extra_in_pyproject():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    core = " ".join(project["dependencies"])

    def packages(extra: str) -> set[str]:  # resolve "nnspec[a,b]" self-references
        found = set()
        for req in extras[extra]:
            if req.startswith("nnspec["):
                for sub in req[len("nnspec["):-1].split(","):
                    found |= packages(sub.strip())
            else:
                found.add(req.split(">")[0].split("=")[0].split("[")[0].strip())
        return found

    for name in OPTIONAL:
        assert name not in core, f"{name} is optional: it belongs in an extra, not in dependencies"
        label, extra, feature = PACKAGES[name]
        assert name in packages(extra), (name, extra)
        assert name in packages("all") and name in packages("test")
    assert packages("netron") >= packages("onnx")  # viz --netron exports ONNX first


def test_require_imports_only_nnspecs_own_optional_packages():
    with pytest.raises(ValueError, match="not an optional package"):
        require("os")


def test_every_extra_is_in_the_readme_and_the_cli_docs():
    """pyproject.toml's extras, each named in README.md's table and docs/cli.md's, and in extras.py's."""
    import re
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    extras = set(tomllib.loads((root / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    for doc in ("README.md", "docs/cli.md", "nnspec/extras.py"):
        listed = set(re.findall(r"^\| `([a-z]+)`\s*\|", (root / doc).read_text(), re.M))
        missing = extras - {"test", "browser"} - listed
        assert not missing, f"{doc} does not list the extras {sorted(missing)}"
