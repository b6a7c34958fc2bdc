"""Limits on what a data file or a data source may make nnspec read or allocate.

A spec (or `--data`) names data; the data's size is then checked before anything is allocated for
it, against the file's own sizes and against this machine's memory, so that a small hostile file
cannot make nnspec use gigabytes or run for minutes. Pure Python (no NumPy): `nnspec check` uses it.
See docs/security.md, "Other inputs".
"""
from __future__ import annotations

import os
import stat
from pathlib import Path

from .diagnostics import UserError

MAX_LINE_CHARS = 1 << 20  # a CSV line longer than this (1 MiB of text) is refused, with its number
MAX_RECORD_CHARS = 16 << 20  # one CSV record (quoted fields may span lines) is at most 16 MiB of text
# an .npz member that would decompress to more than this must not be compressed more than
# MAX_NPZ_RATIO:1 (deflate tops out near 1032:1; only long runs of one byte get near it: a zip bomb)
NPZ_RATIO_ABOVE = 64 << 20
MAX_NPZ_RATIO = 200
SYNTHETIC_MAX_LEN = 24  # length of padded batches made for `int[?]` inputs (and of `?` dimensions)


def memory_text(nbytes: int) -> str:
    """Bytes in binary units (GiB, TiB...), on integers so that 10^400 bytes cannot overflow."""
    units = ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")
    scale = 0
    while scale < len(units) - 1 and nbytes >= 1024 ** (scale + 1):
        scale += 1
    if nbytes >= 1024 ** (len(units) - 1) * 1024:
        return f"about 2^{nbytes.bit_length() - 1} bytes"
    if scale == 0:
        return f"{nbytes} bytes"
    return f"{nbytes / 1024 ** scale:,.1f} {units[scale]}"


def _meminfo(key: str) -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_room() -> int | None:
    """What this process's cgroup (v2) still lets it allocate, when it is limited."""
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit == "max":
            return None
        used = int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
        return max(int(limit) - used, 0)
    except (OSError, ValueError):
        return None


def physical_memory() -> int | None:
    """This machine's memory in bytes (None where it cannot be told)."""
    total = _meminfo("MemTotal")
    if total is None:
        try:
            total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return None
    room = _cgroup_room()
    return min(total, room) if room is not None else total


def available_memory() -> int | None:
    """Memory this process can still allocate without swapping, in bytes (None where unknown)."""
    free = _meminfo("MemAvailable")
    if free is None:
        free = physical_memory()
    room = _cgroup_room()
    if free is None:
        return room
    return min(free, room) if room is not None else free


def synthetic_bytes(inputs, outputs: int, n: int) -> int:
    """The bytes `synthetic(n=n)` makes: each input, (n, *shape) of float32 or int64 (`?` taken as
    SYNTHETIC_MAX_LEN), and the labels' scores (n, outputs) of float32. `inputs`: (shape, dtype)."""
    per_row = 4 * max(outputs, 1)
    for shape, dtype in inputs:
        values = 1
        for d in shape:
            values *= d if d else SYNTHETIC_MAX_LEN
        per_row += values * (8 if dtype == "int" else 4)
    return n * per_row


def delimiter_problem(delimiter) -> str | None:
    """Why `delimiter` cannot separate CSV fields, or None: one character, not a quote or line break."""
    if not isinstance(delimiter, str) or len(delimiter) != 1:
        return "a single character"
    if delimiter in "\r\n\"":
        return "a single character other than a double quote or a line break"
    return None


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


def check_data_size(train: dict, graph, spec, sink) -> None:
    """`nnspec check`: warn (W113) when the spec's synthetic data would not fit in this machine's
    memory; `nnspec train` then refuses it with the numbers, before allocating anything."""
    source = train.get("data")
    if not source or source[0] != "synthetic":
        return
    n = source[1].get("n")
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        return
    nodes = [graph.node(name) for name in graph.inputs]
    if graph.output_node is None or graph.output_node.out is None or any(nd.out is None for nd in nodes):
        return
    outputs = 1
    for d in graph.output_node.out.shape:
        outputs *= d or 1
    need = synthetic_bytes([(nd.out.shape, nd.out.dtype) for nd in nodes], outputs, n)
    total = physical_memory()
    if total is None or need <= total:
        return
    setting = spec.train_setting("data")
    span = setting.span if setting is not None else spec.span
    call = setting.values[0] if setting is not None and setting.values else None
    for i, arg in enumerate(getattr(call, "args", ())):
        if arg.name == "n" or (arg.name is None and i == 0):
            span = arg.span
    sink.warning("W113", f"synthetic(n={n}) would make {memory_text(need)} of data; this machine has "
                 f"{memory_text(total)} of memory, so `nnspec train` will refuse it here",
                 span, help="use a smaller n: synthetic data is made whole, in memory")
