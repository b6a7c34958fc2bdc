"""One owner per run folder: `nnspec train` holds `RUN_DIR/.lock` while it writes in RUN_DIR.

The lock is the file `.lock` in the folder, locked with `fcntl.flock` (exclusive, non-blocking)
and holding its owner as JSON: process id, host, start time and what it is doing. The kernel
drops a flock when its process ends, however it ends, so a lock whose owner was killed (kill -9,
a crash, a power cut) is recognised as stale: the next run takes it over and says so in a note.
A second process that finds the lock held is refused (a UserError, exit 1) with the owner's
process id. The owner removes the file when it is done (normal end, error, Ctrl-C).

Where flock is not available (some network file systems, Windows), the process id in the file
is checked instead: a lock naming a process on this host that is no longer running is stale.

`tune` holds its output folder's lock when the study lives in memory (one process owns it);
with --storage, several tune processes share one output folder by design, and each trial's
run folder (`trials/NNN/`, one per trial number of the shared study) is locked by its trial.
"""
from __future__ import annotations

import errno
import json
import os
import socket
import time
from datetime import datetime, timezone
from pathlib import Path

from .diagnostics import UserError
from .fsutil import write_error

LOCK_NAME = ".lock"

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows: the process id check alone
    fcntl = None


class FolderInUse(UserError):
    """Another live process holds the run folder's lock."""


def _host() -> str:
    return socket.gethostname()


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    except OSError:
        return False
    return True


def _describe(owner: dict) -> str:
    """`nnspec train (process 1234, started 2025-01-02T03:04:05+00:00)`, with the host when it is another."""
    details = [f"process {owner.get('pid', '?')}"]
    if owner.get("host") and owner.get("host") != _host():
        details.append(f"on {owner['host']}")
    if owner.get("started"):
        details.append(f"started {owner['started']}")
    return f"{owner.get('what') or 'another process'} ({', '.join(details)})"


def _read(fd: int) -> dict:
    try:
        raw = os.pread(fd, 65536, 0)
        owner = json.loads(raw.decode("utf-8")) if raw.strip() else {}
    except (OSError, ValueError):
        return {"pid": "?"}
    return owner if isinstance(owner, dict) else {"pid": "?"}


def _flock(fd: int) -> bool | None:
    """True: locked; False: another holds it; None: this file system cannot flock."""
    if fcntl is None:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as err:
        if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        if err.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            return None
        raise
    return True


class RunLock:
    """`with RunLock(folder, what="nnspec train") as lock:` -- `lock.note` says when a stale
    lock was taken over. The folder must exist. `enabled=False` makes it do nothing (the
    workers of a data-parallel run other than rank 0, which write nothing)."""

    def __init__(self, folder: str | Path, what: str = "nnspec train", enabled: bool = True):
        self.folder, self.what, self.enabled = Path(folder), what, enabled
        self.path = self.folder / LOCK_NAME
        self.fd: int | None = None
        self.note: str | None = None

    def __enter__(self) -> "RunLock":
        if self.enabled and self.fd is None:  # not yet held (own_run_dir hands over a held one)
            self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def acquire(self) -> str | None:
        for _ in range(100):  # retried only when an owner removed the file while we opened it
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
            except OSError as err:
                raise write_error(self.path, err) from None
            try:
                locked = _flock(fd)
                if locked is False:
                    raise self._busy(_read(fd))
                try:
                    here = os.fstat(fd)
                    there = os.stat(self.path)
                    same = (here.st_ino, here.st_dev) == (there.st_ino, there.st_dev)
                except FileNotFoundError:
                    same = False
                if not same:  # released (and removed) between our open and our flock: try again
                    os.close(fd)
                    continue
                previous = _read(fd)
                if locked is None and self._held_by_live_process(previous):
                    raise self._busy(previous)
                self._write_owner(fd)
            except BaseException:
                if fd is not None:
                    try:
                        os.close(fd)
                    except OSError:
                        pass
                raise
            self.fd = fd
            if previous.get("pid") not in (None, os.getpid()):
                self.note = (f"{self.path} was left by {_describe(previous)}, which no longer holds it "
                             "(it was killed or crashed); this run takes the folder over")
            return self.note
        raise UserError(f"cannot take the lock {self.path}: it keeps being replaced")  # pragma: no cover

    def _held_by_live_process(self, owner: dict) -> bool:
        pid = owner.get("pid")
        if not isinstance(pid, int) or pid == os.getpid():
            return False
        if owner.get("host") not in (None, _host()):
            return True  # cannot tell from here: the safe answer
        return _alive(pid)

    def _busy(self, owner: dict) -> FolderInUse:
        return FolderInUse(f"{self.folder} is in use by {_describe(owner)}, which holds its lock {self.path}",
                           help=f"wait for it to finish, or choose another folder with --out; if that process "
                                f"is gone for good, delete {self.path}")

    def _write_owner(self, fd: int) -> None:
        owner = {"pid": os.getpid(), "host": _host(),
                 "started": datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds"),
                 "what": self.what, "time": time.time()}
        data = (json.dumps(owner) + "\n").encode("utf-8")
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, data, 0)
            os.fsync(fd)
        except OSError as err:
            raise write_error(self.path, err) from None

    def release(self) -> None:
        """Remove the lock file, then let go of the lock (in that order: a process that opened the
        old file meanwhile sees it is no longer the folder's lock and opens the new one)."""
        fd, self.fd = self.fd, None
        if fd is None:
            return
        try:
            try:
                if (os.fstat(fd).st_ino, os.fstat(fd).st_dev) == (os.stat(self.path).st_ino, os.stat(self.path).st_dev):
                    os.unlink(self.path)
            except OSError:
                pass
        finally:
            os.close(fd)
