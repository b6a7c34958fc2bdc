""".npz archives read safely: the names first, then the header of each array a spec uses, then
only those arrays -- each checked against the archive's own sizes and this machine's memory
before anything is allocated for it.

An .npz file is a zip archive of .npy files. Nothing here unpickles (object arrays are refused),
and nothing reads an array the spec does not use, so an unused member (a zip bomb, say) costs
nothing. A member's .npy header is read by hand up to numpy's own header-size limit, then parsed
by numpy; its declared size (shape x item size) must fit in what the zip directory says the member
holds. Refused, with the array's name: object, complex, structured and void dtypes, negative
dimensions, sizes beyond the member or beyond the memory available, members compressed more than
MAX_NPZ_RATIO:1 above NPZ_RATIO_ABOVE bytes, and compression methods numpy does not write.

Messages name the file, the array and its declared shape and dtype; they never quote the bytes
of a member (an arbitrary zip named as an .npz may hold anything).
"""
from __future__ import annotations

import io
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
from numpy.lib import format as npy_format

from ..diagnostics import UserError
from ..fsutil import open_data_file
from ..memory import MAX_NPZ_RATIO, NPZ_RATIO_ABOVE, memory_text

SAVE_HELP = "save with numpy.savez(path, x=features, y=labels)"
READ_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, NotImplementedError, RuntimeError,
               struct.error, IndexError, KeyError, OverflowError)  # what zipfile and zlib raise on damaged archives
_HEADER_ERRORS = (ValueError, TypeError, KeyError, IndexError, SyntaxError, RecursionError, MemoryError,
                  OverflowError, struct.error)
MAX_HEADER_BYTES = 4 * 10000 + 64  # numpy's max_header_size (10,000 characters) in UTF-8, plus padding
MAX_NAMES_SHOWN = 10


def shown_name(key: str) -> str:
    """A member's name as a message may show it: printable, at most 60 characters."""
    text = "".join(c if c.isprintable() else "?" for c in key)
    return text if len(text) <= 60 else text[:50] + "..." + text[-7:]


def names_text(names) -> str:
    """The arrays of an archive for messages: the names of its .npy members (at most ten), and how
    many other files it holds -- whose names are not shown (an arbitrary zip may be named as .npz)."""
    items = names.items() if isinstance(names, dict) else ((k, None) for k in names)
    arrays, others = [], 0
    for key, info in items:
        if info is None or not isinstance(info, zipfile.ZipInfo) or info.filename.endswith(".npy"):
            arrays.append(key)
        else:
            others += 1
    shown = ", ".join(shown_name(k) for k in arrays[:MAX_NAMES_SHOWN])
    if len(arrays) > MAX_NAMES_SHOWN:
        shown += f" and {len(arrays) - MAX_NAMES_SHOWN} more arrays"
    if others:
        shown += f"{' and ' if shown else ''}{others} other file{'s' if others != 1 else ''}"
    return shown or "nothing"


def shape_text(shape) -> str:
    return "[" + ", ".join(str(d) if abs(d) < 10**15 else f"about 10^{len(str(abs(d))) - 1}" for d in shape) + "]"


@dataclass
class Member:
    """One array of an .npz archive, known from its header alone."""

    key: str  # the array's name (the zip member without .npy)
    info: zipfile.ZipInfo
    shape: tuple
    dtype: np.dtype
    fortran: bool
    offset: int  # bytes of .npy header before the data

    def __len__(self) -> int:
        return int(self.shape[0])

    @property
    def count(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def nbytes(self) -> int:
        return self.count * self.dtype.itemsize

    def describe(self) -> str:
        return f"array '{shown_name(self.key)}' ({shape_text(self.shape)} {self.dtype})"


class Archive:
    """An open .npz file: `names` maps each array's name to its zip entry; `member(key)` reads and
    checks that array's header."""

    def __init__(self, path: Path):
        self.path = path
        f = open_data_file(path, "data file", binary=True)
        try:
            magic = f.read(6)
            if magic.startswith(b"\x93NUMPY"):
                raise UserError(f"{path} holds a single array (.npy), not an .npz archive of named arrays",
                                help=SAVE_HELP)
            if not magic.startswith(b"PK"):
                raise UserError(f"{path} is not an .npz file (not a zip archive of arrays)", help=SAVE_HELP)
            f.seek(0)
            try:
                self.zip = zipfile.ZipFile(f)
            except READ_ERRORS:
                raise UserError(f"{path} is not an .npz file (not a zip archive of arrays), or it is truncated",
                                help=SAVE_HELP) from None
        except BaseException:
            f.close()
            raise
        self._file = f
        self.names: dict[str, zipfile.ZipInfo] = {}
        for info in self.zip.infolist():
            if info.is_dir():
                continue
            key = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
            self.names[key] = info

    def close(self) -> None:
        self.zip.close()
        self._file.close()

    def __enter__(self) -> "Archive":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _damaged(self, what: str, detail: str = "") -> UserError:
        return UserError(f"{self.path} is not a readable .npz file ({what}{': ' + detail if detail else ''})",
                         help=f"{SAVE_HELP}; object arrays (pickles) are refused")

    def member(self, key: str) -> Member:
        """The header of array `key`, checked: a dtype nnspec can read, and a size that fits the member."""
        info = self.names[key]
        name = f"array '{shown_name(key)}'"
        if info.flag_bits & 0x1:
            raise self._damaged(name, "it is encrypted")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise self._damaged(name, f"compressed with zip method {info.compress_type}; numpy.savez and "
                                "savez_compressed write stored or deflated members")
        if info.compress_type == zipfile.ZIP_DEFLATED and info.file_size > 1100 * info.compress_size + 4096:
            raise self._damaged(name, "the zip directory gives it a size its compressed data cannot hold")
        try:
            with self.zip.open(info) as f:
                offset, shape, fortran, dtype = _read_header(f)
        except _HEADER_ERRORS + READ_ERRORS:
            raise self._damaged(name, "no valid .npy header: it is damaged, truncated or not a NumPy array") from None
        shape = tuple(shape)
        if any(d < 0 for d in shape):
            raise self._damaged(name, f"its header declares a negative dimension {shape_text(shape)}")
        if dtype.hasobject:  # its rows are pickles, which could run code
            raise UserError(f"{self.path} is not a readable .npz file ({name}: Object arrays cannot be loaded "
                            "when allow_pickle=False)", help=f"{SAVE_HELP}; object arrays (pickles) are refused")
        member = Member(key, info, shape, dtype, bool(fortran), offset)
        if dtype.kind == "c":
            raise UserError(f"{self.path}: {member.describe()} holds complex numbers; nnspec reads real numbers only",
                            help="save the real and imaginary parts as separate features, e.g. "
                                 "numpy.stack([z.real, z.imag], -1)")
        if dtype.kind == "V" or dtype.names is not None or dtype.itemsize == 0:
            raise UserError(f"{self.path}: {member.describe()} is not an array of numbers or text "
                            "(a structured, void or zero-size dtype)",
                            help=f"{SAVE_HELP}, with plain numeric arrays")
        held = info.file_size - offset
        if member.nbytes > held:
            raise self._damaged(f"{name} is truncated", f"its header declares {shape_text(shape)} {dtype}, "
                                f"{memory_text(member.nbytes)}, but the archive holds {memory_text(max(held, 0))} for it")
        if info.compress_type == zipfile.ZIP_DEFLATED and member.nbytes > NPZ_RATIO_ABOVE \
                and member.nbytes > MAX_NPZ_RATIO * max(info.compress_size, 1):
            raise UserError(f"{self.path}: {member.describe()} would decompress to {memory_text(member.nbytes)} "
                            f"from {memory_text(info.compress_size)}, more than {MAX_NPZ_RATIO}:1 (a zip bomb?)",
                            help="save it uncompressed with numpy.savez (not savez_compressed)")
        return member

    def read(self, member: Member) -> np.ndarray:
        """The whole array, read into memory that grows only as the data really arrives."""
        buffer = np.empty(member.nbytes, np.uint8)  # untouched pages cost nothing until written
        try:
            with self.zip.open(member.info) as f:
                _read_header(f)
                _fill(f, memoryview(buffer), self, member)
        except READ_ERRORS:
            raise self._truncated(member) from None
        flat = buffer.view(member.dtype)
        if member.fortran:
            return flat.reshape(member.shape[::-1]).T
        return flat.reshape(member.shape)

    def rows(self, member: Member, batch: int) -> Iterator[np.ndarray]:
        """The member's rows, `batch` at a time, read from the zip member as it decompresses."""
        if member.fortran:  # stored column by column: no row is contiguous, so this one array is read whole
            whole = self.read(member)
            for start in range(0, len(member), batch):
                yield whole[start:start + batch]
            return
        per_row = member.count // len(member) if len(member) else 0
        try:
            with self.zip.open(member.info) as f:
                _read_header(f)
                for start in range(0, len(member), batch):
                    n = min(batch, len(member) - start)
                    buffer = np.empty(n * per_row * member.dtype.itemsize, np.uint8)
                    _fill(f, memoryview(buffer), self, member)
                    yield buffer.view(member.dtype).reshape(n, *member.shape[1:])
        except READ_ERRORS:
            raise self._truncated(member) from None

    def _truncated(self, member: Member) -> UserError:
        return self._damaged(f"{member.describe()[:-1]}) is truncated or damaged")


def _fill(f, view: memoryview, archive: Archive, member: Member) -> None:
    got, size = 0, len(view)
    while got < size:
        n = f.readinto(view[got:got + (16 << 20)])
        if not n:
            raise archive._truncated(member)
        got += n


def _read_header(f) -> tuple[int, tuple, bool, np.dtype]:
    """(bytes before the data, shape, Fortran order, dtype) of an .npy stream. The header's length
    is checked before its bytes are read (numpy would read a declared 4 GiB header first)."""
    start = f.read(8)
    if len(start) < 8:
        raise ValueError("too short")
    version = npy_format.read_magic(io.BytesIO(start))
    size_format = "<H" if version == (1, 0) else "<I"
    if version not in ((1, 0), (2, 0), (3, 0)):
        raise ValueError("unknown version")
    length_bytes = f.read(struct.calcsize(size_format))
    if len(length_bytes) != struct.calcsize(size_format):
        raise ValueError("too short")
    (length,) = struct.unpack(size_format, length_bytes)
    if length > MAX_HEADER_BYTES:
        raise ValueError("header too long")
    header = f.read(length)
    if len(header) != length:
        raise ValueError("too short")
    whole = io.BytesIO(start + length_bytes + header)
    npy_format.read_magic(whole)
    if version == (1, 0):
        shape, fortran, dtype = npy_format.read_array_header_1_0(whole)
    else:  # 2.0, and 3.0 (utf-8 field names) with ASCII ones
        shape, fortran, dtype = npy_format.read_array_header_2_0(whole)
    return len(start) + len(length_bytes) + length, shape, fortran, dtype
