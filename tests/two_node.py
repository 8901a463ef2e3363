"""The reference pipeline on a real two-node Ray cluster started on this machine.

Run as a script by `tests/test_reference_pipeline.py` (a process holds one Ray: the suite's
own is in the pytest process). It starts a head and a worker node with Ray's
`cluster_utils.Cluster`, materializes the reference definitions for a range of days through
`RayResource(address=...)` (the local resources otherwise, tables under TABLE_ROOT), and prints
one JSON line: whether both runs succeeded, how many nodes were alive and the cluster's CPUs.

Usage: `python tests/two_node.py TABLE_ROOT '{"days": [...], "rows_per_day": N,
"customers": N, "seed": N}'`.
"""

from __future__ import annotations

import json
import os
import sys


def main(root: str, spec: dict) -> None:
    import ray
    from ray.cluster_utils import Cluster
    from ray.data import DataContext

    from definitions.runs import materialize_days
    from definitions.sources import OrderSource
    from ray_assets import RayResource
    from resources.local import local_resources

    store_bytes = 160 * 1024**2
    cluster = Cluster(
        initialize_head=True, head_node_args={"num_cpus": 1, "object_store_memory": store_bytes}
    )
    cluster.add_node(num_cpus=1, object_store_memory=store_bytes)
    cluster.wait_for_nodes()
    resources = {
        **local_resources(table_root=root),
        "order_source": OrderSource(
            rows_per_day=spec["rows_per_day"], customers=spec["customers"], seed=spec["seed"]
        ),
        "ray": RayResource(address=cluster.address),
    }
    RayResource(address=cluster.address).ensure_started()
    DataContext.get_current().enable_progress_bars = False
    results = materialize_days(resources, spec["days"])
    outcome = {
        "success": [result.success for result in results],
        "nodes_alive": sum(1 for node in ray.nodes() if node["Alive"]),
        "cluster_cpus": ray.cluster_resources().get("CPU"),
    }
    print(json.dumps(outcome), flush=True)
    ray.shutdown()
    cluster.shutdown()


if __name__ == "__main__":
    sys.path.insert(0, os.getcwd())
    main(sys.argv[1], json.loads(sys.argv[2]))
    sys.stdout.flush()
    os._exit(0)  # deltalake's runtime can abort the interpreter at exit: the result is out
