"""Large short-lived blocks served from the C library's heap instead of fresh pages
(:func:`reuse_freed_memory`), for the network's analysis and training on the CPU.

glibc's malloc takes every block above its mmap threshold (128 KiB, raised by what is freed up to
32 MiB) straight from the kernel and gives it back on ``free``. The network's activations are up to ~50 MB
each, made and dropped layer after layer, so every picture touched 0.05–0.15 GB of fresh pages (one
page fault per 4 KiB, each page zeroed by the kernel). On the 2-core VM of bench/README.md a default render of a
10 s clip took ~1 M faults (3–5 CPU s of system time, a fifth of the render) this way; with the heap
reused, ~0.25 M (only the first touch of the heap's pages).

Within the context, glibc serves every block from its heap (no ``mmap``) and keeps freed memory
(no trimming), so the next layer reuses pages already mapped. On leaving, the large-block
``mmap`` comes back with the 32 MiB threshold that glibc's own adjustment reaches (setting the
parameters ends that adjustment) and the kept memory is returned (``malloc_trim``). Nested and
concurrent uses share one setting. No effect where the C library is not glibc (nothing else is
changed). Values computed inside are the same bits: only where memory comes from changes.
"""

from __future__ import annotations

import ctypes
import sys
import threading
from contextlib import contextmanager
from typing import Iterator

# mallopt(3) parameters (glibc's malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_MMAP_MAX = -4
#: glibc's defaults and the end state of its dynamic threshold, restored on leaving.
DEFAULT_MMAP_MAX = 65536
MMAP_THRESHOLD_MAX = 32 * 1024 * 1024
TRIM_THRESHOLD_AFTER = 2 * MMAP_THRESHOLD_MAX
#: Freed memory kept while inside (the heap top is not given back below this; mallopt takes an int).
TRIM_THRESHOLD_INSIDE = 2**31 - 1

_lock = threading.Lock()
_depth = 0
_libc: ctypes.CDLL | None | bool = False  # False: not looked up yet


def glibc() -> ctypes.CDLL | None:
    """The process's C library when it is glibc (has ``mallopt`` and ``malloc_trim``), else None."""
    global _libc
    if _libc is False:
        lib = None
        if sys.platform.startswith("linux"):
            try:
                c = ctypes.CDLL(None)
                if all(hasattr(c, f) for f in ("gnu_get_libc_version", "mallopt", "malloc_trim")):
                    lib = c
            except OSError:
                pass
        _libc = lib
    return _libc or None


def _set(lib: ctypes.CDLL, param: int, value: int) -> None:
    lib.mallopt(ctypes.c_int(param), ctypes.c_int(value))


def reusing_freed_memory() -> bool:
    """Whether a :func:`reuse_freed_memory` context is active now (always False off glibc)."""
    return glibc() is not None and _depth > 0


@contextmanager
def reuse_freed_memory() -> Iterator[None]:
    """Within: large blocks come from the heap and freed memory is kept for the next ones (see the
    module docstring). Peak memory stays that of the largest live set plus fragmentation; it is
    returned on leaving."""
    global _depth
    lib = glibc()
    if lib is None:
        yield
        return
    with _lock:
        _depth += 1
        if _depth == 1:
            _set(lib, M_TRIM_THRESHOLD, TRIM_THRESHOLD_INSIDE)
            _set(lib, M_MMAP_MAX, 0)
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                _set(lib, M_MMAP_MAX, DEFAULT_MMAP_MAX)
                _set(lib, M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX)
                _set(lib, M_TRIM_THRESHOLD, TRIM_THRESHOLD_AFTER)
                lib.malloc_trim(ctypes.c_size_t(0))
