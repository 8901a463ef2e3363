"""A writer process for the race tests: it writes the same partitions as its twin, round by round.

Each round both processes start together (a barrier before the write, so a round never overlaps
the last one), execute their pipelines, then meet at a second barrier right before the commit
(the widest window a race can have: both have read the table before either commits), and
commit. What each write reported goes back through a queue. The module is imported by
`multiprocessing`'s spawn start method, so it holds only what the child needs.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any

ROWS_BY_WRITER = {"a": 5, "b": 7}
"""Each writer writes a different number of rows, so a doubled partition is plain to see."""
START = dt.date(2024, 3, 1)


def day_of(round_index: int) -> str:
    return (START + dt.timedelta(days=round_index)).isoformat()


def rows_of(writer: str, day: str, amount_type: str) -> Any:
    import pyarrow as pa

    count = ROWS_BY_WRITER[writer]
    amounts = pa.array(range(count), pa.int64()).cast(amount_type)
    return pa.table({"order_date": [day] * count, "writer": [writer] * count, "amount": amounts})


def run_writer(
    gcs_address: str,
    writer: str,
    scenarios: list[dict[str, Any]],
    barrier: Any,
    results: Any,
) -> None:
    """Run every scenario's rounds; put one `(scenario, round, outcome)` record per write."""
    import dagster as dg
    import ray
    import ray.data
    from ray.data import DataContext

    from ray_assets import DeltaStore, ParquetStore, PartitionSlice, RayAssetsError
    from ray_assets.storage import delta_commit

    ray.init(address=gcs_address, log_to_driver=False)
    DataContext.get_current().enable_progress_bars = False
    # the commit step of each store: a Delta log commit, the Parquet manifests' publication
    for owner, name in ((delta_commit.SliceCommitter, "commit"), (ParquetStore, "_publish")):
        setattr(owner, name, _at_barrier(getattr(owner, name), barrier))
    daily = dg.DailyPartitionsDefinition(start_date="2024-01-01")
    for scenario in scenarios:
        for round_index in range(scenario["rounds"]):
            day = day_of(0 if scenario.get("same_day") else round_index)
            if scenario.get("own_day"):  # each writer its own partition of the round
                day = day_of(2 * round_index + (writer == "b"))
            uri = scenario["uri"].format(round=round_index)
            store = (ParquetStore if scenario.get("store") == "parquet" else DeltaStore)(
                uri,
                on_concurrent_write=scenario["mode"],
                storage_options=scenario.get("storage_options"),
            )
            data = ray.data.from_arrow(rows_of(writer, day, scenario["amount_type"][writer]))
            partition = PartitionSlice.from_keys(daily, [day], "order_date", asset_key="orders")
            barrier.wait(timeout=120)  # both start the round after both finished the last one
            try:
                result = store.write(data, partition, write_id=f"{writer}-{round_index}")
                outcome = {
                    "status": "ok",
                    "version": result.table_version,
                    "replaced": [
                        (c.table_version, list(c.partition_keys)) for c in result.concurrent_commits
                    ],
                    "warnings": result.warnings,
                }
            except RayAssetsError as error:
                outcome = {"status": type(error).__name__, "message": str(error)}
            results.put((scenario["name"], round_index, writer, outcome))


def _at_barrier(commit: Any, barrier: Any) -> Any:
    def commit_at_barrier(self: Any, *args: Any, **kwargs: Any) -> Any:
        barrier.wait(timeout=120)
        return commit(self, *args, **kwargs)

    return commit_at_barrier


def race(
    gcs_address: str, scenarios: list[dict[str, Any]]
) -> dict[str, dict[int, dict[str, dict]]]:
    """Run `scenarios` with the two writer processes; outcomes by scenario, round and writer."""
    import multiprocessing

    spawn = multiprocessing.get_context("spawn")
    barrier, results = spawn.Barrier(2), spawn.Queue()
    writers = [
        spawn.Process(target=run_writer, args=(gcs_address, name, scenarios, barrier, results))
        for name in ROWS_BY_WRITER
    ]
    for process in writers:
        process.start()
    outcomes: dict[str, dict[int, dict[str, dict]]] = defaultdict(lambda: defaultdict(dict))
    for _ in range(2 * sum(s["rounds"] for s in scenarios)):
        scenario, round_index, writer, outcome = results.get(timeout=300)
        outcomes[scenario][round_index][writer] = outcome
    for process in writers:
        process.join(timeout=60)
        assert process.exitcode == 0
    return outcomes
