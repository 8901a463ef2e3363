"""Settings of Arrow's memory allocator in the Ray processes that ray_assets starts.

pyarrow allocates through its bundled mimalloc, whose defaults suit a long-lived process that
allocates little at a time: transparent huge pages on, and memory returned to the operating
system 10 ms after it is freed. A Ray worker running a pipeline does the opposite: each task
allocates and frees a few hundred MiB of column buffers. Measured on the ETL benchmark's
pipeline (2 workers, 8 read tasks of 6.75M rows each; 3 fresh processes per setting, each
running it once cold and 4 times warm):

- the first execution took 2.22-2.47 s with mimalloc's defaults and 1.66-1.69 s with these
  settings: a huge-page fault zeroes 2 MiB at once, and on the benchmark machine (a virtual
  machine) those faults cost far more than the 4 KiB faults of the memory a task touches;
- each warm execution faulted 12,000-26,000 pages back in, memory the previous task had freed
  and mimalloc had returned; with freed memory kept for 10 s, 100-10,000. Warm executions took
  1.47 s (median; 1.27-1.54 s) before and 1.40 s (1.35-1.52 s) after.

Both are mimalloc options, read from the environment when pyarrow's library loads in a
process, so they apply to the processes Ray starts for an embedded Ray or the shared local
head, and a value the environment already holds is kept. Workers of a cluster that ray_assets
did not start keep the cluster's own environment; set these variables there to get the same.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping

WORKER_ALLOCATOR_ENV: Mapping[str, str] = {
    "MIMALLOC_ALLOW_THP": "0",  # no transparent huge pages
    "MIMALLOC_PURGE_DELAY": "10000",  # ms a freed segment stays mapped before it is returned
}


def allocator_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The allocator settings that `environ` (default: this process's) does not set itself."""
    environ = os.environ if environ is None else environ
    return {name: value for name, value in WORKER_ALLOCATOR_ENV.items() if name not in environ}


@contextlib.contextmanager
def allocator_env_for_started_processes() -> Iterator[None]:
    """Within it, processes started from this one (an embedded Ray's raylet, and through it
    every worker) get the allocator settings; this process's environment is restored on exit.
    mimalloc reads its options when pyarrow's library loads, so this process keeps the
    allocator it has, unless it loads pyarrow for the first time within."""
    added = allocator_env()
    os.environ.update(added)
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)
