"""The ETL benchmark's job as a ray_assets user writes it: one daily-partitioned `ray_asset`.

The asset's body is the job in Arrow-native Ray Data: `ray_assets.read_parquet_files` reads only
the columns the job needs and only the valid rows (the filter is pushed into the Parquet reader;
the files are listed once on the driver, without Ray 2.60's 32 footer-reading actors), the rate lookup as a pyarrow batch
function (`pc.index_in` + `take`: a vectorised dictionary lookup, no pandas conversion), and
`ray_assets.aggregate_by` (per-block partial sums finished in one task, no shuffle, no
aggregator actors). `materialize_partition_range` runs the 30 days as one Dagster run, so
`DeltaIOManager` stores the table in one partition-exact commit.

This is a module of its own, imported by `bench/etl_engines.py` only for this engine, because
Dagster resolves the asset's annotations in the module that defines it; and since Ray workers
cannot import a module of `bench/` by name, its functions are shipped by value.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
import ray.cloudpickle
import ray.data
from etl_data import JOB_COLUMNS, RATES, TABLE_NAME, day_keys

from ray_assets import (
    ROWS,
    DeltaIOManager,
    RayResource,
    aggregate_by,
    lookup,
    materialize_partition_range,
    ray_asset,
    read_parquet_files,
)

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


_instance: dg.DagsterInstance | None = None


def start() -> None:
    """An embedded Ray started as a ray_assets run starts it (`RayResource()`'s defaults, or
    the object store of `ETL_OBJECT_STORE_BYTES`: `bench/constant_memory.py` makes it much
    smaller than the data); the run's own `RayResource` then finds it up and uses it. Also the
    Dagster instance the run is recorded in: creating it imports Dagster's storage modules
    (about 1.5 s), which a run process under `dagster dev` or the daemon has loaded before its
    run starts, like every other import the benchmark keeps outside the clock."""
    global _instance
    _instance = dg.DagsterInstance.ephemeral()  # first, so Ray's warm-up starts with the clock
    store = os.environ.get("ETL_OBJECT_STORE_BYTES")
    RayResource(object_store_memory_bytes=int(store) if store else None).ensure_started()


def daily_usd_asset(data: Path) -> dg.AssetsDefinition:
    """The asset over the 30 days of the input files in `data`."""
    days = day_keys()
    end = (dt.date.fromisoformat(days[-1]) + dt.timedelta(days=1)).isoformat()
    daily = dg.DailyPartitionsDefinition(start_date=days[0], end_date=end)

    @ray_asset(name=TABLE_NAME, partitions_def=daily, partition_column="day")
    def daily_usd(context: dg.AssetExecutionContext) -> ray.data.Dataset:
        orders = read_parquet_files(
            str(data),
            columns=JOB_COLUMNS,
            filter=pc.field("valid"),
            dictionary_columns=["day", "currency"],
        ).map_batches(
            amount_in_usd,
            batch_format="pyarrow",
            fn_kwargs={
                "currencies": pa.array(list(RATES)),
                "rates": pa.array(list(RATES.values()), pa.float64()),
            },
        )
        return aggregate_by(
            orders, "day", {"amount_usd": ("amount_usd", "sum"), "orders": (ROWS, "count")}
        )

    return daily_usd


def amount_in_usd(batch: pa.Table, currencies: pa.Array, rates: pa.Array) -> pa.Table:
    """`day` and `amount_usd` of a batch: each currency's position in `currencies` picks its
    rate (a vectorised dictionary lookup); an unknown currency gives a null amount."""
    rate = lookup(batch["currency"], currencies, rates)
    return pa.table({"day": batch["day"], "amount_usd": pc.multiply(batch["amount"], rate)})


def run(data: Path, out: Path) -> None:
    """One Dagster run of the asset for all 30 days, its table at `out/daily_usd`."""
    days = day_keys()
    materialize_partition_range(
        [daily_usd_asset(data)],
        days[0],
        days[-1],
        resources={"ray": RayResource(), "delta_io_manager": DeltaIOManager(root_uri=str(out))},
        instance=_instance,
    )
