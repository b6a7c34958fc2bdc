"""The development environment is the lock: every package in the project's .venv is pinned,
at its installed version, in requirements/lock.txt, and everything the lock names is there.

Runs only inside the project's own .venv (the one `make test` builds from the lock); in any
other environment there is nothing of ours to compare.
"""
from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements" / "lock.txt"

pytestmark = pytest.mark.skipif(Path(sys.prefix).resolve() != (ROOT / ".venv").resolve(),
                                reason="checks the project's own .venv, built by `make test` from the lock")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked() -> dict[str, str]:
    pins = {}
    for line in LOCK.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep, f"requirements/lock.txt: {line!r} is not pinned to one version"
            pins[canonical(name)] = version.strip()
    return pins


def installed() -> dict[str, str]:
    found = {canonical(d.metadata["Name"]): d.version for d in metadata.distributions()}
    found.pop("nnspec")  # the project itself, installed editable from the work tree
    return found


def test_every_installed_package_is_pinned_at_its_version():
    pins = locked()
    unlocked = {n: v for n, v in installed().items() if pins.get(n) != v}
    assert not unlocked, f"installed but not pinned (name: installed version): {unlocked}; run `make lock`"


def test_everything_the_lock_names_is_installed():
    missing = set(locked()) - set(installed())
    assert not missing, f"in requirements/lock.txt but not in .venv: {sorted(missing)}; rm -rf .venv and run make test"


def test_torch_is_the_cpu_build():
    assert locked()["torch"].endswith("+cpu")
