"""A memory budget for decoding: the pixel cap (36 MP) bounds one image, not a burst of them.
A 150 KB PNG just under the cap decodes to ~144 MB (RGBA) and needs about twice that on its way
to a model-sized array; sixteen arriving together at a server needed gigabytes. So every decode
in the process (the runtime's decode pool, the sidecar's request threads, the demo's events)
first reserves its estimated bytes from one budget (`LESIONLENS_DECODE_BUDGET_MB`, default
320), waiting while others hold it; an image larger than the whole budget is decoded alone.
Leaving a large decode hands the freed memory back to the system: glibc otherwise keeps freed
blocks of this size in its heaps, and a server stayed at several times its baseline after one
burst. Small images (under `SMALL_DECODE_BYTES`) pass without waiting. Torch-free."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
from contextlib import contextmanager
from typing import Iterator

SMALL_DECODE_BYTES = 8 * 1024 * 1024  # a 1.4 MP RGB photo: no reservation, no trim
DECODE_BUDGET_BYTES = max(16, int(os.environ.get("LESIONLENS_DECODE_BUDGET_MB", "320"))) * 1024 * 1024


class DecodeBudget:
    """Bytes reserved by the decodes in progress, at most `limit` (one oversized decode alone)."""

    def __init__(self, limit: int):
        self.limit, self.used = limit, 0
        self._changed = threading.Condition()

    @contextmanager
    def reserve(self, nbytes: int) -> Iterator[None]:
        if nbytes <= SMALL_DECODE_BYTES:
            yield
            return
        nbytes = min(nbytes, self.limit)
        with self._changed:
            self._changed.wait_for(lambda: self.used + nbytes <= self.limit)
            self.used += nbytes
        try:
            yield
        finally:
            with self._changed:
                self.used -= nbytes
                self._changed.notify_all()
            _malloc_trim()


decode_budget = DecodeBudget(DECODE_BUDGET_BYTES)
_libc = None


def _malloc_trim() -> None:
    """glibc's malloc_trim(0): return free heap memory to the system (a no-op elsewhere)."""
    global _libc
    if _libc is None:
        try:
            _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        except OSError:
            _libc = False
    trim = getattr(_libc, "malloc_trim", None) if _libc else None
    if trim is not None:
        trim(0)
