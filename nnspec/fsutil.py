"""Every file nnspec writes for the user, written atomically, and a clear error when it cannot be.

A file is written to a temporary file beside it (`.NAME.XXXXXXXX.tmp`, same folder, so the same
file system), fsync'ed, then renamed over the target with `os.replace`: a reader (or a crash, a
kill, a full disk) sees the old file or the new one, never half of one, and never a 0-byte
leftover. On any failure the temporary file is removed and the old file is left as it was.

An OSError while writing (a full disk, a read-only or unwritable folder, a missing folder, a
folder where the file should be, a file where a folder should be) becomes a UserError, so the
command exits 1 with one line naming the path and the reason (never an internal error, exit 70):

    error: cannot write out/model.onnx: the folder out does not exist
      = help: create the folder first (mkdir -p out), or write somewhere else

Folders given as folders (`--out DIR`) are created with `make_dir`; the folder of a file given
with `-o FILE` must exist (`make_parents=False`, the default), so a typo in a path is an error
instead of a new folder. Run folders' files (train, tune) are written with `make_parents=True`.

This module imports nothing heavy: commands that never need torch (fmt, viz, compile --emit
json) use it too.
"""
from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from pathlib import Path
from typing import Callable, Iterator

from .diagnostics import UserError

REASONS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EISDIR: "it is a folder, not a file",
    errno.EEXIST: "a file of that name is in the way",
    errno.ENAMETOOLONG: "the name is too long",
}

HINTS = {
    errno.ENOSPC: "free some space, or write somewhere else",
    errno.EDQUOT: "free some space, or write somewhere else",
    errno.EROFS: "write to a folder on a writable file system",
    errno.EACCES: "write to a folder you may write in, or change its permissions",
    errno.EPERM: "write to a folder you may write in, or change its permissions",
    errno.EISDIR: "give the name of a file, not of a folder",
}


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


UMASK = _current_umask()


def write_error(path: str | Path, err: OSError, help: str | None = None) -> UserError:
    """`cannot write PATH: REASON` with a hint, for an OSError met while writing `path`."""
    path = Path(path)
    code = err.errno
    if code == errno.ENOENT and not path.parent.is_dir():
        folder = _missing_folder(path)
        why = f"the folder {folder} does not exist"
        hint = f"create the folder first (mkdir -p {path.parent}), or write somewhere else"
    else:
        why = REASONS.get(code) or err.strerror or str(err)
        hint = HINTS.get(code, "write somewhere else")
    return UserError(f"cannot write {path}: {why}", help=help or hint)


def _missing_folder(path: Path) -> Path:
    """The first folder on the way to `path` that does not exist."""
    missing = path.parent
    while missing.parent != missing and not missing.parent.exists():
        missing = missing.parent
    return missing


def make_dir(path: str | Path, help: str | None = None) -> Path:
    """Create a folder (and its parents), or raise a UserError saying why it cannot be."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise write_error(path, err, help) from None
    return path


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable; best effort (not every platform can open a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_file(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | Path, *, mode: int | None = None, make_parents: bool = False,
                help: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `path` for a writer that needs a file name (matplotlib,
    Graphviz, onnx); when the block ends without an exception, the file is fsync'ed and renamed
    over `path`. Otherwise it is removed and `path` keeps its old content.

    `mode`: the new file's permissions (default: those of the file it replaces, else 0666 less
    the umask). `make_parents`: create missing folders first (run folders); without it a
    missing folder is an error that says to create it."""
    path = Path(path)
    tmp: str | None = None
    try:
        if make_parents:
            make_dir(path.parent, help)
        if path.is_dir():
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
        if mode is None:
            try:
                mode = path.stat().st_mode & 0o7777
            except OSError:
                mode = 0o666 & ~UMASK
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        yield Path(tmp)
        os.chmod(tmp, mode)  # mkstemp makes 0600
        _fsync_file(tmp)
        os.replace(tmp, path)
        tmp = None
        _fsync_dir(path.parent)
    except OSError as err:
        raise write_error(path, err, help) from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def atomic_write(path: str | Path, write: Callable[[str], object], **options) -> None:
    """Write through `write(tmp_path)` (a str), then rename over `path` (see atomic_path)."""
    with atomic_path(path, **options) as tmp:
        write(str(tmp))


def atomic_write_bytes(path: str | Path, data: bytes, **options) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)

    atomic_write(path, write, **options)


def atomic_write_text(path: str | Path, text: str, **options) -> None:
    """UTF-8, newlines written as given (no translation to the platform's)."""
    atomic_write_bytes(path, text.encode("utf-8"), **options)


# ---------------------------------------------------------------- reading data files
def open_data_file(path: Path, what: str = "data file", *, binary: bool = False,
                   help: str = "paths in a spec are relative to the spec file"):
    """Open a data file for reading, refusing what is not a regular file (a folder, a device such as
    /dev/zero or /dev/stdin, a pipe, a socket) before reading a byte: such a file could be endless,
    or block. Text files are opened as UTF-8 (a BOM is skipped) with universal line ends."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise UserError(f"{what} not found: {path}", help=help) from None
    except IsADirectoryError:
        raise UserError(f"{path} is a folder, not a {what}", help=help) from None
    except OSError as err:  # no permission, a name too long...
        raise UserError(f"cannot read the {what} {path}: {err.strerror or err}") from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise UserError(f"{path} is a folder, not a {what}", help=help)
        if not stat.S_ISREG(mode):
            kind = ("a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a pipe" if stat.S_ISFIFO(mode)
                    else "a socket" if stat.S_ISSOCK(mode) else "not a regular file")
            raise UserError(f"{path} is {kind}, not a regular file: nnspec reads data only from regular files",
                            help="copy the data into a file first")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        if binary:
            return os.fdopen(fd, "rb")
        return open(fd, newline="", encoding="utf-8-sig")  # -sig: a BOM is not part of the first column's name
    except BaseException:
        os.close(fd)
        raise


def run_checkpoint(folder: Path, which: str = "best") -> Path | None:
    """The checkpoint a run folder of `nnspec train` stands for: best.pt, else last.pt (a run without a validation
    split or an improvement may have no best.pt); `which="last"`: last.pt only. None if absent."""
    order = ("last.pt",) if which == "last" else ("best.pt", "last.pt")
    return next((folder / name for name in order if (folder / name).is_file()), None)
