"""Checks decided before the commit, under real Dagster runs on a real Ray and real Delta tables.

One table holds three good days; every failing run below tries to replace them and must leave
that table exactly as it was. Each check breaks on a day the test picks, and Dagster must name
that day, the count and the offending values.
"""

from __future__ import annotations

import sys
from pathlib import Path

import dagster as dg
import numpy as np
import pyarrow as pa
import pytest
import ray.cloudpickle
from ray.data.expressions import col

from ray_assets import (
    DeltaIOManager,
    RayResource,
    checks,
    materialize_partition_range,
    ray_asset,
)
from tests.conftest import delta_log_rows, delta_version, failure_text, file_digests

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

DAILY = dg.DailyPartitionsDefinition(start_date="2024-01-01")
DAYS = [f"2024-01-0{day}" for day in range(1, 9)]
ROWS = 20
STATUSES = ("paid", "returned")

ALL_CHECKS = [
    checks.not_null("customer_id"),
    checks.unique("order_id"),
    checks.between("amount", -100, 100),
    checks.accepted_values("status", STATUSES),
    checks.row_count(min=10),
    checks.schema(
        {
            "order_id": "int64",
            "order_date": "string",
            "customer_id": "int64",
            "amount": "double",
            "status": "string",
        }
    ),
    checks.expression(
        "returns_are_negative",
        (col("status") != "returned") | (col("amount") <= 0),
        description="a returned order has a negative amount",
    ),
]


def generate(batch: dict[str, np.ndarray], *, keys: list[str], breaks: list, log: str):
    """Orders of `keys`, broken on each (day, way) of `breaks` in that way."""
    table = None
    for bad_day, bad in breaks or [("", "")]:
        table = _broken(batch, keys, bad, bad_day, table)
    with open(log, "a") as out:  # one line per call: how many times the pipeline ran
        out.write(f"{len(batch['id'])}\n")
    return table


def _broken(batch, keys, bad, bad_day, before):
    ids = batch["id"]
    days = np.array(keys, dtype=object)[ids // ROWS]
    if before is None:
        amounts = (ids % 7).astype(float) + 1.0
        status = np.where(ids % 5 == 0, "returned", "paid").astype(object)
        amounts = np.where(status == "returned", -amounts, amounts)
        customers = pa.array(ids % 11, pa.int64())
        order_ids = ids.copy()
    else:
        amounts = before["amount"].to_numpy(zero_copy_only=False)
        status = before["status"].to_numpy(zero_copy_only=False).astype(object)
        customers = before["customer_id"]
        order_ids = before["order_id"].to_numpy(zero_copy_only=False)
    on_bad_day = days == bad_day
    if bad == "not_null_customer_id":
        customers = pa.array(
            [
                None if b and i % 4 == 0 else c
                for i, b, c in zip(ids, on_bad_day, customers.to_pylist(), strict=True)
            ],
            pa.int64(),
        )
    elif bad == "unique_order_id":
        order_ids = np.where(on_bad_day & (ids % 2 == 1), ids - 1, ids)
    elif bad == "between_amount":
        amounts = np.where(on_bad_day & (ids % 10 == 3), 1000.0 + ids, amounts)
    elif bad == "accepted_values_status":
        status = np.where(on_bad_day & (ids % 10 == 4), "lost", status).astype(object)
    elif bad == "returns_are_negative":
        amounts = np.where(on_bad_day & (status == "returned"), 9.0, amounts)
    table = pa.table(
        {
            "order_id": pa.array(order_ids, pa.int64()),
            "order_date": pa.array(days, pa.string()),
            "customer_id": customers,
            "amount": pa.array(amounts, pa.float64()),
            "status": pa.array(status, pa.string()),
        }
    )
    if bad == "row_count":
        table = table.filter(pa.array(~on_bad_day | (ids % ROWS < 3)))
    if bad == "schema":
        table = table.append_column("note", pa.array(["x"] * table.num_rows))
    return table


def orders_asset(check_list, *, breaks: dict | list | None = None, log: str = "/dev/null"):
    @ray_asset(
        name="orders", partitions_def=DAILY, partition_column="order_date", checks=check_list
    )
    def orders(context: dg.AssetExecutionContext):
        import ray.data

        keys = list(context.partition_keys)
        pairs = list(breaks.items()) if isinstance(breaks, dict) else list(breaks or [])
        return ray.data.range(ROWS * len(keys), override_num_blocks=2).map_batches(
            generate,
            batch_format="numpy",
            fn_kwargs={"keys": keys, "breaks": pairs, "log": log},
        )

    return orders


def resources(root: Path) -> dict[str, object]:
    return {"ray": RayResource(), "delta_io_manager": DeltaIOManager(root_uri=str(root))}


def evaluations(result: dg.ExecuteInProcessResult) -> dict[tuple[str, str | None], object]:
    found = {}
    for event in result.all_events:
        if event.event_type_value == "ASSET_CHECK_EVALUATION":
            data = event.event_specific_data
            found[(data.check_name, data.partition)] = data
    return found


@pytest.fixture(scope="module")
def good_table(ray_session, tmp_path_factory) -> tuple[Path, int, dict[str, str]]:
    """Three good days, committed with every check passing; (root, version, file digests)."""
    root = tmp_path_factory.mktemp("checks")
    log = root / "calls.log"
    with dg.instance_for_test() as instance:
        result = materialize_partition_range(
            [orders_asset(ALL_CHECKS, log=str(log))],
            DAYS[0],
            DAYS[-1],
            resources=resources(root),
            instance=instance,
        )
        assert result.success
        found = evaluations(result)
        for check in ALL_CHECKS:
            for day in DAYS:
                assert found[(check.name, day)].passed, (check.name, day)
        # the pipeline ran once: its generator saw every row exactly once
        assert sum(int(line) for line in log.read_text().split()) == ROWS * len(DAYS)
        history = instance.event_log_storage.get_asset_check_execution_history(
            dg.AssetCheckKey(dg.AssetKey("orders"), "unique_order_id"), limit=10
        )
        assert {record.partition for record in history} >= set(DAYS)
    table = root / "orders"
    return root, delta_version(table), file_digests(table)


BREAK_DAYS = {  # one check broken per day; 2024-01-01 and 2024-01-08 stay good
    "2024-01-02": "not_null_customer_id",
    "2024-01-03": "unique_order_id",
    "2024-01-04": "between_amount",
    "2024-01-05": "accepted_values_status",
    "2024-01-06": "returns_are_negative",
    "2024-01-07": "row_count",  # last: it drops rows
}


def expected_failure(day: str, name: str) -> tuple[int, list[str]]:
    """(failed rows, some offending values) of check `name` broken on `day` by `generate`."""
    base = DAYS.index(day) * ROWS
    return {
        "not_null_customer_id": (5, []),
        "unique_order_id": (20, [f"{base} ×2", f"{base + 2} ×2"]),
        "between_amount": (2, [f"{1000.0 + base + 3}", f"{1000.0 + base + 13}"]),
        "accepted_values_status": (2, ["'lost'"]),
        "returns_are_negative": (4, ["{'status': 'returned', 'amount': 9.0}"]),
        "row_count": (0, []),
    }[name]


def test_each_broken_day_fails_its_own_check_and_nothing_is_committed(good_table) -> None:
    root, version, digests = good_table
    with dg.instance_for_test() as instance:
        result = materialize_partition_range(
            [orders_asset(ALL_CHECKS, breaks=BREAK_DAYS)],
            DAYS[0],
            DAYS[-1],
            resources=resources(root),
            instance=instance,
            raise_on_error=False,
        )
        assert not result.success
        assert instance.get_materialized_partitions(dg.AssetKey("orders")) == set()
    table = root / "orders"
    assert delta_version(table) == version  # no new version
    assert file_digests(table) == digests  # the earlier content, intact
    found = evaluations(result)
    message = failure_text(result)
    assert "asset 'orders', partitions '2024-01-01'..'2024-01-08'" in message
    assert "nothing was committed" in message
    assert f"{len(BREAK_DAYS)} blocking check result(s) failed" in message
    for check in ALL_CHECKS:
        for day in DAYS:
            verdict = found[(check.name, day)]
            if BREAK_DAYS.get(day) != check.name:
                assert verdict.passed, (check.name, day)  # only its own day fails
                continue
            failed_rows, samples = expected_failure(day, check.name)
            assert not verdict.passed and verdict.severity == dg.AssetCheckSeverity.ERROR
            assert verdict.metadata["failed_rows"].value == failed_rows, check.name
            assert verdict.metadata["partition"].value == day
            if samples:
                shown = verdict.metadata["offending_values"].value
                assert all(sample in shown for sample in samples), shown
            assert f"check '{check.name}'" in message and f"on partition '{day}'" in message
            for sample in samples:
                assert sample in message


def test_the_schema_check_fails_a_first_write_and_creates_no_table(ray_session, tmp_path) -> None:
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [orders_asset(ALL_CHECKS, breaks={"2024-01-02": "schema"})],
            partition_key="2024-01-02",
            resources=resources(tmp_path),
            instance=instance,
            raise_on_error=False,
        )
    assert not result.success
    broken = evaluations(result)[("schema", "2024-01-02")]
    assert not broken.passed and "'note' not expected" in broken.metadata["detail"].value
    assert "'note' not expected" in failure_text(result)
    assert not (tmp_path / "orders" / "_delta_log").exists()
    assert not list((tmp_path / "orders").rglob("*.parquet"))  # its files were removed


def test_single_key_runs_fail_every_broken_check_and_pass_a_good_day(good_table) -> None:
    root, version, digests = good_table
    day = "2024-01-02"
    key_checks = [c for c in ALL_CHECKS if c.name != "row_count"] + [checks.row_count(min=21)]
    breaks = [(day, name) for name in BREAK_DAYS.values() if name != "row_count"]
    with dg.instance_for_test() as instance:
        broken = dg.materialize(
            [orders_asset(key_checks, breaks=breaks)],
            partition_key=day,
            resources=resources(root),
            instance=instance,
            raise_on_error=False,
        )
        assert not broken.success
        good = dg.materialize(
            [orders_asset(ALL_CHECKS)],  # row_count(min=10): a good day passes every check
            partition_key="2024-01-08",
            resources=resources(root / "copy"),
            instance=instance,
        )
        assert good.success
        for check in key_checks:
            history = instance.event_log_storage.get_asset_check_execution_history(
                dg.AssetCheckKey(dg.AssetKey("orders"), check.name), limit=5
            )
            statuses = {(r.partition, r.status.value) for r in history}
            expected = "SUCCEEDED" if check.name == "schema" else "FAILED"
            assert statuses == {(day, expected), ("2024-01-08", "SUCCEEDED")}, check.name
    found = evaluations(broken)
    for name in BREAK_DAYS.values():
        if name == "row_count":
            assert (
                "20 row(s), fewer than the minimum 21"
                in found[(name, day)].metadata["detail"].value
            )
            continue
        failed_rows, samples = expected_failure(day, name)
        assert found[(name, day)].metadata["failed_rows"].value == failed_rows, name
    assert f"{len(key_checks) - 1} blocking check result(s) failed" in failure_text(broken)
    assert delta_version(root / "orders") == version
    assert file_digests(root / "orders") == digests


def test_a_failed_non_blocking_check_commits_and_warns(ray_session, tmp_path) -> None:
    warn_only = [
        checks.between("amount", -100, 100, blocking=False),
        checks.unique("order_id"),
    ]
    log = tmp_path / "calls.log"
    with dg.instance_for_test() as instance:
        result = materialize_partition_range(
            [orders_asset(warn_only, breaks={"2024-01-03": "between_amount"}, log=str(log))],
            DAYS[0],
            DAYS[-1],
            resources=resources(tmp_path),
            instance=instance,
        )
        assert result.success, failure_text(result)
        assert instance.get_materialized_partitions(dg.AssetKey("orders")) == set(DAYS)
        history = instance.event_log_storage.get_asset_check_execution_history(
            dg.AssetCheckKey(dg.AssetKey("orders"), "between_amount"), limit=10
        )
        statuses = {r.partition: r.status.value for r in history if r.partition}
        assert statuses == {day: "FAILED" if day == "2024-01-03" else "SUCCEEDED" for day in DAYS}
    assert delta_log_rows(tmp_path / "orders") == dict.fromkeys(DAYS, ROWS)
    warned = evaluations(result)[("between_amount", "2024-01-03")]
    assert not warned.passed and warned.severity == dg.AssetCheckSeverity.WARN
    summary = evaluations(result)[("between_amount", None)]
    assert not summary.passed and summary.metadata["partitions_failed"].value == 1
    assert sum(int(line) for line in log.read_text().split()) == ROWS * len(DAYS)


def test_checks_become_asset_check_specs_and_freshness_a_policy() -> None:
    import datetime as dt

    asset = orders_asset([*ALL_CHECKS[:2], checks.between("amount", 0, blocking=False)])
    specs = {spec.name: spec for spec in asset.check_specs}
    assert set(specs) == {"not_null_customer_id", "unique_order_id", "between_amount"}
    assert specs["unique_order_id"].blocking and not specs["between_amount"].blocking
    assert specs["unique_order_id"].partitions_def == DAILY

    @ray_asset(checks=[checks.freshness(dt.timedelta(hours=24), warn_after=dt.timedelta(hours=12))])
    def dimension():
        return None

    policy = dimension.specs_by_key[dg.AssetKey("dimension")].freshness_policy
    assert policy.fail_window.to_timedelta() == dt.timedelta(hours=24)
    with pytest.raises(ValueError, match="share the name"):
        ray_asset(checks=[checks.unique("a"), checks.unique(["a"])])(lambda: None)
    with pytest.raises(TypeError, match="ray_assets.checks"):
        ray_asset(checks=[dg.AssetCheckSpec("x", asset="y")])(lambda: None)
    with pytest.raises(ValueError, match="low bound is above"):
        checks.between("amount", 5, 1)


def test_a_rerun_of_a_committed_write_reports_the_results_it_committed_with(
    ray_session, tmp_path
) -> None:
    import ray.data

    from ray_assets import DeltaStore, PartitionSlice
    from ray_assets.checks.gate import CheckGate, CheckResults

    rules = [checks.between("amount", 0, 5, blocking=False), checks.row_count(min=1)]
    store = DeltaStore(str(tmp_path / "orders"))
    data = pa.table({"order_date": ["2024-01-01"] * 3, "amount": [1.0, 7.0, 9.0]})
    key = PartitionSlice.from_keys(DAILY, ["2024-01-01"], "order_date", asset_key="orders")
    first_gate, second_gate = CheckGate(rules), CheckGate(rules)
    first = store.write(
        ray.data.from_arrow(data),
        key,
        write_id="run-1",
        observer=first_gate.observer(),
        gate=first_gate,
    )
    again = store.write(
        ray.data.from_arrow(data),
        key,
        write_id="run-1",
        observer=second_gate.observer(),
        gate=second_gate,
    )
    assert first.committed and not again.committed
    assert again.table_version == first.table_version
    results = CheckResults.from_record(rules, again.gate_record)
    warned = results.verdicts["between_amount"]["2024-01-01"]
    assert not warned.passed and warned.failed_rows == 2 and warned.samples == ("7.0", "9.0")
    assert results.verdicts["row_count"]["2024-01-01"].passed


def test_freshness_checks_are_dagsters_for_the_assets_that_declare_one(
    ray_session, tmp_path
) -> None:
    import datetime as dt

    @ray_asset(checks=[checks.freshness(dt.timedelta(hours=2))])
    def dimension():
        return pa.table({"id": [1, 2]})

    daily_asset = orders_asset([checks.freshness(dt.timedelta(days=1), deadline_cron="0 9 * * *")])
    built = checks.freshness_checks([dimension, daily_asset, orders_asset([])])
    *check_defs, sensor = built
    assert sensor.name == "freshness_checks_sensor"
    keys = {key.asset_key.to_user_string() for d in check_defs for key in d.check_keys}
    assert keys == {"dimension", "orders"}
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [dimension, *check_defs[:1]], resources=resources(tmp_path), instance=instance
        )
    assert result.success
    (evaluation,) = [
        e.event_specific_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    ]
    assert evaluation.passed  # materialized a moment ago


def test_checks_on_an_asset_stored_outside_delta_fail_saying_so(ray_session, tmp_path) -> None:
    from ray_assets.connectors.sql import SqlDatabase, SqlIOManager

    @ray_asset(io_manager_key="sql_io_manager", checks=[checks.not_null("id")])
    def exported():
        return pa.table({"id": [1, None]})

    database = SqlDatabase(url=f"sqlite:///{tmp_path / 'db.sqlite'}")
    result = dg.materialize(
        [exported],
        resources={"ray": RayResource(), "sql_io_manager": SqlIOManager(database=database)},
        raise_on_error=False,
    )
    assert not result.success
    assert "Store it with a DeltaIOManager" in failure_text(result)
    assert not database.has_table("exported")
