"""pan360.allocator: inside ``reuse_freed_memory`` a freed large block's pages serve the next one (no
fresh page faults); outside, and again after leaving, glibc maps fresh pages for each."""

from __future__ import annotations

import pytest
from conftest import assert_python_ok

from pan360.allocator import glibc

pytestmark = pytest.mark.skipif(glibc() is None, reason="the C library is not glibc: the context does nothing")

# Page faults of allocating and filling a 64 MiB block, after one of that size was freed.
# Run in a fresh interpreter so that nothing else in the process shares the heap's state.
CODE = """
import ctypes
import resource
from pan360.allocator import glibc, reuse_freed_memory

libc = glibc()
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
N = 64 * 2**20  # bytes; malloc directly (numpy asks for huge pages on large arrays, torch does not)

def block():
    p = libc.malloc(ctypes.c_size_t(N))
    ctypes.memset(p, 1, N)  # touch every page
    libc.free(p)

def faults_of_a_second_block():
    block()  # the first block: its pages are faulted in either way
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

pages = N // 4096
outside = faults_of_a_second_block()
with reuse_freed_memory():
    with reuse_freed_memory():  # nested: one setting
        inner = faults_of_a_second_block()
    still = faults_of_a_second_block()
after = faults_of_a_second_block()
assert outside > pages // 2, (outside, pages)  # mmap'd afresh: a fault per page
assert inner < pages // 20 and still < pages // 20, (inner, still, pages)  # the freed pages reused
assert after > pages // 2, (after, pages)  # mmap again after leaving
"""


def test_freed_pages_are_reused_inside_only() -> None:
    assert_python_ok(CODE)


def test_values_and_errors_pass_through() -> None:
    import numpy as np

    from pan360.allocator import reuse_freed_memory

    with pytest.raises(ValueError, match="inside"):
        with reuse_freed_memory():
            x = np.arange(10**6, dtype=np.float64)
            assert float(x.sum()) == 499999500000.0
            raise ValueError("inside")
    with reuse_freed_memory():  # usable again after an exception left it
        assert np.ones(2**21).sum() == 2**21
