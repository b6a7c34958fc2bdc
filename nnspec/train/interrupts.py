"""Ctrl-C between epochs, not inside an epoch's bookkeeping.

An epoch ends by updating the in-memory progress and then writing last.pt, history.csv and
metrics.json. A SIGINT that lands between those steps would leave the run folder and the
"interrupted after epoch N" message disagreeing by one epoch (and a finished epoch unsaved).
`epoch_commit()` holds the signal back for those few milliseconds and delivers it after them."""
from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator


@contextlib.contextmanager
def epoch_commit() -> Iterator[None]:
    """Defer SIGINT for the block; if one came, deliver it once the block finished without error
    (an error raised inside is the more useful report and propagates unchanged)."""
    in_main = threading.current_thread() is threading.main_thread()  # only the main thread may set handlers
    if not in_main or signal.getsignal(signal.SIGINT) is None:  # None: set outside Python, so it could not be put back
        yield
        return
    caught: list[object] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(frame))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        _deliver(previous, caught[0])


def _deliver(handler, frame) -> None:
    """What the handler in place before the block would have done with the SIGINT."""
    if callable(handler):
        handler(signal.SIGINT, frame)  # Python's default one raises KeyboardInterrupt
    elif handler == signal.SIG_DFL:
        signal.raise_signal(signal.SIGINT)
