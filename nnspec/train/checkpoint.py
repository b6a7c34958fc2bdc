"""Checkpoints and run files: atomic writes, the IR hash, and safe loading (weights_only=True).

A checkpoint holds only tensors and plain containers of numbers and strings, so
`torch.load(weights_only=True)` reads it without unpickling any code. It carries the spec's
source and the hash of its canonical IR (`nnspec compile --emit json`, keys sorted, no spaces):
loading one into a different spec is refused before any tensor is copied.

Surviving a crash (kill -9, power loss, a full disk): files are written to a temporary file,
fsync'ed and renamed over the old one, so a reader sees the old or the new file, never half of
one. Each checkpoint stores a SHA-256 of its own content (`checksum`), verified on load, so a
truncated or corrupted file is refused with a message instead of being trained on; the checksum
is required (one without it, e.g. with the key removed or its name damaged, is refused too). Before
last.pt is replaced, the previous one is kept as last.prev.pt: `--resume` falls back to it when
last.pt is damaged. NNSPEC_TEST_PAUSE_IN_SAVE=SECONDS (tests only) pauses halfway through writing
a checkpoint that replaces an existing one, so a test can kill the process at exactly that point.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Mapping

import torch

from .. import fsutil
from ..diagnostics import UserError

FORMAT = 1


# How long a run trains, and what only `nnspec tune` reads: a run may be resumed after these
# change (`epochs 3` edited to `epochs 8`, then `--resume`); every other setting is the run's meaning.
LENGTH_SETTINGS = ("epochs", "steps")


def ir_hash(checked) -> str:
    """sha256 of the checked IR as `compile --emit json` writes it, less the source positions: a
    comment, a blank line or `nnspec fmt` must not orphan a run's checkpoints; any change of
    meaning does. The length of training (LENGTH_SETTINGS) and the `search` section are no part of
    it: training longer continues the same run."""
    from ..backends.json_ir import as_json

    ir = as_json(checked)
    ir["nodes"] = [{k: v for k, v in node.items() if k != "span"} for node in ir["nodes"]]
    ir.pop("search", None)
    ir["train"] = {k: v for k, v in (ir.get("train") or {}).items() if k not in LENGTH_SETTINGS}
    canonical = json.dumps(ir, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


# Run files are written through nnspec.fsutil (temporary file, fsync, rename); a run folder's
# missing parents are created, and an OSError names the file and says to choose another --out.
RUN_FILE_HELP = ("choose a writable output folder with --out DIR (with free space); "
                 "checkpoints already written are kept intact")


def atomic_write(path: str | Path, write, make_parents: bool = True, help: str | None = RUN_FILE_HELP) -> None:
    """Write via `write(tmp_path)` into a temporary file beside `path`, then rename over it.

    An OSError (read-only folder, full disk, a file where a folder should be) becomes a
    UserError naming the path; the old file, if any, is left untouched."""
    fsutil.atomic_write(path, write, make_parents=make_parents, help=help)


def make_dir(path: str | Path) -> Path:
    """Create a run folder (and its parents), or say clearly why it cannot be."""
    return fsutil.make_dir(path, RUN_FILE_HELP)


def _write_error(path: Path, err: OSError) -> UserError:
    return fsutil.write_error(path, err, RUN_FILE_HELP)


def write_text(path: str | Path, text: str, make_parents: bool = True, help: str | None = RUN_FILE_HELP) -> None:
    fsutil.atomic_write_text(path, text, make_parents=make_parents, help=help)


PREVIOUS = {"last.pt": "last.prev.pt"}  # checkpoints whose previous version is kept for --resume


def save(path: str | Path, payload: Mapping[str, Any]) -> None:
    save_encoded(path, encode(payload))


def encode(payload: Mapping[str, Any]) -> bytes:
    """A checkpoint's bytes (with its format and checksum): made once when last.pt and best.pt are
    the same state, since serialising costs more than writing."""
    payload = dict(payload, format=FORMAT)
    payload["checksum"] = content_checksum(payload)
    buf = io.BytesIO()
    torch.save(payload, buf)
    return buf.getvalue()


def save_encoded(path: str | Path, data: bytes) -> None:
    """Write `encode`'s bytes atomically (last.pt keeps its previous version as last.prev.pt)."""
    path = Path(path)
    if path.name in PREVIOUS and path.is_file():
        _keep_previous(path, path.with_name(PREVIOUS[path.name]))
    atomic_write(path, lambda tmp: _write_bytes(tmp, data, path.name))


def _keep_previous(path: Path, previous: Path) -> None:
    """previous <- path, atomically, while path stays in place (a hard link, or a copy)."""
    link = previous.with_name(f".{previous.name}.link")
    try:
        link.unlink(missing_ok=True)
        try:
            os.link(path, link)
        except OSError:  # no hard links on this file system
            atomic_write(link, lambda tmp: Path(tmp).write_bytes(path.read_bytes()))
        os.replace(link, previous)
    except OSError as err:
        raise _write_error(previous, err) from None


def _write_bytes(tmp: str, data: bytes, name: str) -> None:
    pause = os.environ.get("NNSPEC_TEST_PAUSE_IN_SAVE") if os.path.exists(Path(tmp).parent / name) else None
    with open(tmp, "wb") as f:
        if not pause:
            f.write(data)
            return
        f.write(data[: len(data) // 2])  # a test kills the process here: half a file on disk
        f.flush()
        os.fsync(f.fileno())
        print(f"nnspec-test: pausing in the middle of writing {name}", file=sys.stderr, flush=True)
        time.sleep(float(pause))
        f.write(data[len(data) // 2:])


def content_checksum(payload: Mapping[str, Any]) -> str:
    """SHA-256 over every value of a checkpoint (tensors by dtype, shape and bytes), `checksum` excluded."""
    h = hashlib.sha256()
    _feed(h, {k: v for k, v in payload.items() if k != "checksum"})
    return h.hexdigest()


def _feed(h, value) -> None:
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy() if t.numel() else b"")  # its buffer, not a copy
    elif isinstance(value, Mapping):
        h.update(b"{")
        for k in sorted(value, key=repr):
            h.update(repr(k).encode())
            _feed(h, value[k])
        h.update(b"}")
    elif isinstance(value, (list, tuple)):
        h.update(b"[")
        for v in value:
            _feed(h, v)
        h.update(b"]")
    else:
        h.update(repr(value).encode())


def _load_failure(err: Exception) -> str:
    """Why torch could not read a file, without torch's advice to load it unsafely."""
    text = (str(err).splitlines() or [""])[0]
    if "weights only load failed" in text.lower() or "weights_only" in text:
        return "it holds objects other than tensors and plain values, which nnspec never unpickles"
    return f"{type(err).__name__}: {text}"


def load(path: str | Path, expected_hash: str | None = None, spec_name: str | None = None) -> dict[str, Any]:
    """Read a checkpoint safely; refuse one made from another spec (its IR hash differs)."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"no checkpoint at {p}", help="checkpoints are written as last.pt and best.pt in the run folder")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as err:  # a corrupt or foreign file: say so, never a traceback
        raise UserError(f"{p} is truncated or corrupt: it cannot be read as a checkpoint ({_load_failure(err)})",
                        help="give the last.pt or best.pt of a `nnspec train` run") from None
    if not isinstance(ckpt, dict):
        raise UserError(f"{p} is not an nnspec checkpoint (it holds no dictionary of values)",
                        help="give the last.pt or best.pt of a `nnspec train` run")
    if not isinstance(ckpt.get("checksum"), str):  # required: without it, nothing would be verified
        raise UserError(f"{p} has no checksum: it was not written by nnspec or is corrupt",
                        help="give the last.pt or best.pt of a `nnspec train` run; use last.prev.pt or best.pt "
                             "of the run if this one was damaged")
    if content_checksum(ckpt) != ckpt["checksum"]:
        raise UserError(f"{p} is corrupt: its content does not match the checksum stored in it",
                        help="the file was damaged after it was written; use last.prev.pt or best.pt of the run")
    if "model" not in ckpt or "ir_hash" not in ckpt:
        raise UserError(f"{p} is not an nnspec checkpoint (no model state or IR hash)",
                        help="give the last.pt or best.pt of a `nnspec train` run")
    if expected_hash is not None:
        require_spec(ckpt, p, expected_hash, spec_name)
    return ckpt


def require_spec(ckpt: Mapping[str, Any], path: Path, expected_hash: str, spec_name: str | None = None) -> None:
    """Refuse a loaded checkpoint made from another spec (its IR hash differs)."""
    if ckpt["ir_hash"] != expected_hash and spec_hash(ckpt) != expected_hash:
        made_from = ckpt.get("spec_name", "another model")
        raise UserError(f"{path} was trained from a different spec ({made_from}, IR hash {ckpt['ir_hash'][:12]}) "
                        f"than {spec_name or 'this one'} (IR hash {expected_hash[:12]})",
                        help="use the checkpoint of a run of this spec; its spec.nn is saved beside it")


def spec_hash(ckpt: Mapping[str, Any]) -> str:
    """The IR hash of the spec a checkpoint was trained from, as ir_hash computes it now: that of the
    spec source it holds, else the one stored (the same for every checkpoint written since the hash
    left out the length of training)."""
    return _source_hash(ckpt) or str(ckpt["ir_hash"])


def _source_hash(ckpt: Mapping[str, Any]) -> str | None:
    """The IR hash of the spec source a checkpoint holds, as ir_hash computes it now: a checkpoint
    written before the hash left out the length of training still matches its spec."""
    source = ckpt.get("spec_source")
    if not isinstance(source, str):
        return None
    from ..pipeline import check_text

    try:
        result = check_text(source, "spec.nn")
    except Exception:  # a source that no longer parses is a different spec, never a crash here
        return None
    return ir_hash(result.checked) if result.ok else None


def load_for_resume(run_dir: Path, expected_hash: str, spec_name: str) -> tuple[dict[str, Any], list[str]]:
    """last.pt of a run, or last.prev.pt when last.pt is missing, truncated or corrupt (said in a note).

    A damaged last.pt is moved aside as last.pt.corrupt and the good one put in its place, so
    the run folder is whole again before training continues."""
    last, previous = run_dir / "last.pt", run_dir / PREVIOUS["last.pt"]
    for stale in run_dir.glob(".*.tmp"):  # left by a process killed while writing
        stale.unlink(missing_ok=True)
    try:
        return load(last, expected_hash, spec_name), []
    except UserError as damaged:
        if not previous.is_file() or "different spec" in damaged.message:
            raise
        state = load(previous, expected_hash, spec_name)
        if last.exists():
            os.replace(last, last.with_name("last.pt.corrupt"))
        atomic_write(last, lambda tmp: Path(tmp).write_bytes(previous.read_bytes()))
        return state, [f"{damaged.message}; resumed from the previous checkpoint {previous.name} "
                       f"(epoch {state.get('epoch')}) instead"]


def rng_state(generator: torch.Generator | None, augmenter=None) -> dict[str, Any]:
    """The random streams a run draws from: torch's global ones, shuffling's and augmentation's."""
    state = {"torch": torch.get_rng_state()}
    if generator is not None:
        state["shuffle"] = generator.get_state()
    if augmenter is not None:  # train/augment.py: its own stream, so --resume continues it
        state["augment"] = augmenter.state.clone()
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: Mapping[str, Any], generator: torch.Generator | None, augmenter=None) -> None:
    torch.set_rng_state(state["torch"])
    if generator is not None and "shuffle" in state:
        generator.set_state(state["shuffle"])
    if augmenter is not None and "augment" in state:
        augmenter.state = state["augment"].clone()
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
