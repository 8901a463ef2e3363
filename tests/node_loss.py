"""F03, a Ray node lost mid-write, on a real two-node Ray cluster started on this machine.

Run as a script by `tests/test_faults.py` (a process holds one Ray: the suite's own is in the
pytest process). It starts a head (1 CPU) and a worker node (2 CPUs) with Ray's
`cluster_utils.Cluster`, writes a daily partition through `DeltaStore.write` whose blocks spread
over both nodes, removes the worker node (its raylet and workers are killed) as soon as one of
its tasks has started, and prints one JSON line: how the write ended and what the table holds.

Usage: `python tests/node_loss.py TABLE_DIR MARKER_DIR`.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

ROWS = 16_000
BLOCKS = 8


def main(table: str, markers: str) -> None:
    import dagster as dg
    import numpy as np
    import pyarrow as pa
    import ray
    import ray.data
    from ray.cluster_utils import Cluster
    from ray.data import DataContext

    from ray_assets import DeltaStore, PartitionSlice, RayAssetsError, RayResource

    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "object_store_memory": 128 * 1024**2},
    )
    worker = cluster.add_node(num_cpus=2, object_store_memory=128 * 1024**2)
    RayResource(address=cluster.address).ensure_started()
    DataContext.get_current().enable_progress_bars = False
    worker_node_id = worker.node_id
    marker_dir = Path(markers)

    def work(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        node = ray.get_runtime_context().get_node_id()
        (marker_dir / f"{node}-{os.getpid()}-{batch['id'][0]}").touch()
        deadline = time.monotonic() + 0.5  # half a second of work a block: time to lose a node
        total = 0
        while time.monotonic() < deadline:
            total += int(np.sum(batch["id"] % 7))
        return {
            "order_id": batch["id"],
            "order_date": np.full(len(batch["id"]), "2024-01-01", dtype=object),
            "checksum": np.full(len(batch["id"]), total % 2, dtype=np.int64),
        }

    def remove_worker_once_busy() -> None:
        while not any(p.name.startswith(worker_node_id) for p in marker_dir.iterdir()):
            time.sleep(0.05)
        cluster.remove_node(worker, allow_graceful=False)

    daily = dg.DailyPartitionsDefinition(start_date="2024-01-01")
    day = PartitionSlice.from_keys(daily, ["2024-01-01"], "order_date", asset_key="orders")
    store = DeltaStore(table)
    remover = threading.Thread(target=remove_worker_once_busy, daemon=True)
    remover.start()
    outcome: dict[str, object] = {}
    try:
        dataset = ray.data.range(ROWS, override_num_blocks=BLOCKS).map_batches(work)
        result = store.write(dataset, day, write_id="node-loss")
        outcome.update(ok=True, rows_written=result.rows_written)
    except RayAssetsError as error:
        outcome.update(ok=False, error=str(error)[:2000])
    remover.join(timeout=60)
    table_version = store.version()
    rows = ids = 0
    if table_version is not None:
        read = pa.concat_tables(ray.get(store.read(day).to_arrow_refs()))
        rows, ids = read.num_rows, len(set(read["order_id"].to_pylist()))
    from ray_assets.maintenance import reclaim_orphans

    data_files = lambda: sum(1 for _ in Path(table).rglob("*.parquet"))  # noqa: E731
    on_disk_before = data_files()
    reclaimed, _, _ = reclaim_orphans(store, lambda _write: True)  # the write is over
    in_log = 0 if table_version is None else len(store.open_table().file_uris())
    nodes_alive = sum(1 for node in ray.nodes() if node["Alive"])
    on_worker = sum(1 for p in marker_dir.iterdir() if p.name.startswith(worker_node_id))
    outcome.update(
        table_version=table_version,
        rows=rows,
        unique_ids=ids,
        expected_rows=ROWS,
        nodes_alive=nodes_alive,
        blocks_started_on_the_lost_node=on_worker,
        data_files_before_maintenance=on_disk_before,
        orphans_reclaimed=len(reclaimed),
        data_files_after_maintenance=data_files(),
        data_files_in_the_log=in_log,
    )
    print(json.dumps(outcome), flush=True)
    ray.shutdown()
    cluster.shutdown()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
    sys.stdout.flush()
    os._exit(0)  # deltalake's runtime can abort the interpreter at exit: the result is out
