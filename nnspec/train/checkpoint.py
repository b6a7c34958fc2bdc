"""Checkpoints and run files: atomic writes, the IR hash, and safe loading (weights_only=True).

A checkpoint holds only tensors and plain containers of numbers and strings, so
`torch.load(weights_only=True)` reads it without unpickling any code. It carries the spec's
source and the hash of its canonical IR (`nnspec compile --emit json`, keys sorted, no spaces):
loading one into a different spec is refused before any tensor is copied.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping

import torch

from ..diagnostics import UserError

FORMAT = 1


def ir_hash(checked) -> str:
    from ..backends.json_ir import as_json

    canonical = json.dumps(as_json(checked), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def atomic_write(path: str | Path, write) -> None:
    """Write via `write(tmp_path)` into a temporary file beside `path`, then rename over it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def save(path: str | Path, payload: Mapping[str, Any]) -> None:
    atomic_write(path, lambda tmp: torch.save(dict(payload, format=FORMAT), tmp))


def load(path: str | Path, expected_hash: str | None = None, spec_name: str | None = None) -> dict[str, Any]:
    """Read a checkpoint safely; refuse one made from another spec (its IR hash differs)."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"no checkpoint at {p}", help="checkpoints are written as last.pt and best.pt in the run folder")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as err:  # a corrupt or foreign file: say so, never a traceback
        raise UserError(f"{p} is not a readable nnspec checkpoint ({type(err).__name__}: {str(err).splitlines()[0]})",
                        help="give the last.pt or best.pt of a `nnspec train` run") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "ir_hash" not in ckpt:
        raise UserError(f"{p} is not an nnspec checkpoint (no model state or IR hash)",
                        help="give the last.pt or best.pt of a `nnspec train` run")
    if expected_hash is not None and ckpt["ir_hash"] != expected_hash:
        made_from = ckpt.get("spec_name", "another model")
        raise UserError(f"{p} was trained from a different spec ({made_from}, IR hash {ckpt['ir_hash'][:12]}) "
                        f"than {spec_name or 'this one'} (IR hash {expected_hash[:12]})",
                        help="use the checkpoint of a run of this spec; its spec.nn is saved beside it")
    return ckpt


def rng_state(generator: torch.Generator | None) -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if generator is not None:
        state["shuffle"] = generator.get_state()
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: Mapping[str, Any], generator: torch.Generator | None) -> None:
    torch.set_rng_state(state["torch"])
    if generator is not None and "shuffle" in state:
        generator.set_state(state["shuffle"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
