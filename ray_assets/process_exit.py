"""A faster exit for the processes that run pipelines: skip the interpreter's last full
garbage collection.

A Dagster run process holds millions of objects once Dagster, Ray, Ray Data and pyarrow are
loaded, and CPython's finalisation walks all of them for cycles before it exits: measured
0.47 s of a 4 s `dagster asset materialize` of one small partition, after the run had already
succeeded. `gc.freeze()` in an exit hook moves every live object out of the collector's sight
first, so the exit takes 0.04 s. Nothing changes while the process lives: the hook runs at
interpreter exit only, and every other exit hook (Ray's shutdown, logging's flush) still runs.
What it gives up is what Python never promised: finalizers of objects that only a reference
cycle keeps alive at exit.
"""

from __future__ import annotations

import atexit
import gc


def skip_final_gc_at_exit() -> None:
    """Register the exit hook, once per process however often it is asked for (registering
    again first takes the earlier registration out)."""
    atexit.unregister(gc.freeze)
    atexit.register(gc.freeze)
