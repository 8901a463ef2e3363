"""BigQueryProject against a local stand-in (`bigquery_fake.py`): a contract test of the
requests the real Google clients send, since no BigQuery emulator installs here. The clients'
REST and gRPC transports are real; BigQuery's query engine, type system, quotas and IAM are not
(README: what this leaves untested).
"""

from __future__ import annotations

import datetime as dt
import json
import os

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
import pytest

pytest.importorskip("google.cloud.bigquery_storage_v1", reason="the bigquery extra is missing")

from bigquery_fake import FakeBigQuery, start  # noqa: E402

from ray_assets.connectors.bigquery import BigQueryProject  # noqa: E402
from ray_assets.errors import (  # noqa: E402
    PartitionColumnError,
    StrayPartitionValuesError,
    WarehouseError,
)
from ray_assets.partition_slice import PartitionSlice  # noqa: E402

DAYS = dg.DailyPartitionsDefinition(start_date="2024-01-01", end_date="2024-01-05")
HOSTILE = ["x' OR '1'='1", "1; DROP TABLE orders; --", "\u2019 OR \u20181\u2019=\u20181", "b\\'"]


@pytest.fixture(scope="module")
def fake() -> FakeBigQuery:
    fake = FakeBigQuery()
    http, grpc_server = start(fake)
    yield fake
    http.shutdown()
    grpc_server.stop(grace=None)


def _project(fake: FakeBigQuery, **changes) -> BigQueryProject:
    options = dict(
        project="acme",
        dataset="sales",
        anonymous=True,
        api_endpoint=fake.rest_url,
        read_endpoint=fake.grpc_endpoint,
        read_insecure=True,
    )
    return BigQueryProject(**(options | changes))


def _orders(rows: int, days: int = 4, first_id: int = 0) -> pa.Table:
    import numpy as np

    ids = np.arange(first_id, first_id + rows, dtype=np.int64)
    first = dt.date(2024, 1, 1)
    calendar = pa.array([first + dt.timedelta(days=d) for d in range(days)], pa.date32())
    return pa.table(
        {
            "id": ids,
            "day": calendar.take(pa.array(ids % days)),
            "region": pa.array(["north", "south", "x' OR '1'='1"]).take(pa.array(ids % 3)),
            "amount": ids * 0.25,
        }
    )


def _slice(*keys: str) -> PartitionSlice:
    return PartitionSlice.from_keys(DAYS, list(keys), "day", asset_key="orders")


def _stored(fake: FakeBigQuery, table: str) -> pa.Table:
    return fake.tables[f"acme.sales.{table}"].data


def test_a_partition_is_one_truncating_load_job_to_its_decorator(fake, ray_session) -> None:
    project = _project(fake)
    project.write(
        _orders(4_000), "orders", partition=_slice(*[f"2024-01-0{d}" for d in range(1, 5)])
    )
    fake.requests.clear()
    new = _orders(4_000, first_id=10_000).filter(pc.field("day") == dt.date(2024, 1, 2))
    assert project.write(new, "orders", partition=_slice("2024-01-02")) == 1_000
    loads = [r for r in fake.requests if r["kind"] == "load"]
    assert len(loads) == 1
    load = loads[0]["config"]["configuration"]["load"]
    assert load["destinationTable"] == {
        "projectId": "acme",
        "datasetId": "sales",
        "tableId": "orders$20240102",
    }
    assert load["writeDisposition"] == "WRITE_TRUNCATE" and load["sourceFormat"] == "PARQUET"
    assert load["timePartitioning"] == {"type": "DAY", "field": "day"}
    assert not [r for r in fake.requests if r["kind"] == "DELETE"]  # never the table
    stored = _stored(fake, "orders")
    assert stored.num_rows == 4_000
    day = stored.filter(pc.field("day") == dt.date(2024, 1, 2))
    assert pc.min(day["id"]).as_py() >= 10_000 and day.num_rows == 1_000


def test_a_range_is_one_job_per_partition_and_an_empty_partition_is_emptied(
    fake, ray_session
) -> None:
    project = _project(fake)
    project.write(
        _orders(4_000),
        "ranged",
        partition=_slice("2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04"),
    )
    fake.requests.clear()
    only_third = _orders(400, first_id=20_000).filter(pc.field("day") == dt.date(2024, 1, 3))
    assert project.write(only_third, "ranged", partition=_slice("2024-01-02", "2024-01-03")) == 100
    targets = sorted(
        r["config"]["configuration"]["load"]["destinationTable"]["tableId"]
        for r in fake.requests
        if r["kind"] == "load"
    )
    assert targets == ["ranged$20240102", "ranged$20240103"]
    stored = _stored(fake, "ranged")
    assert stored.filter(pc.field("day") == dt.date(2024, 1, 2)).num_rows == 0
    assert stored.filter(pc.field("day") == dt.date(2024, 1, 3)).num_rows == 100
    assert stored.num_rows == 2_000 + 100


def test_a_read_is_one_session_with_its_filter_and_one_task_per_stream(fake, ray_session) -> None:
    project = _project(fake)
    project.write(
        _orders(8_000),
        "read_me",
        partition=_slice("2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04"),
    )
    fake.requests.clear()
    dataset = project.read(
        "read_me", columns=["id", "day"], partition=_slice("2024-01-02", "2024-01-04"), streams=3
    )
    rows = dataset.to_pandas()
    assert len(rows) == 4_000 and rows["id"].is_unique and list(rows.columns) == ["id", "day"]
    assert set(rows["day"]) == {dt.date(2024, 1, 2), dt.date(2024, 1, 4)}
    session = next(r for r in fake.requests if r["kind"] == "CreateReadSession")
    assert session["table"] == "projects/acme/datasets/sales/tables/read_me"
    assert session["selected_fields"] == ["id", "day"] and session["max_stream_count"] == 3
    assert session["row_restriction"] == "(`day` IN (DATE '2024-01-02', DATE '2024-01-04'))"
    streams = {r["stream"] for r in fake.requests if r["kind"] == "ReadRows"}
    assert len(streams) == 3
    assert "ReadBigQuery(read_me): 3 tasks executed" in dataset.stats()
    assert project.read("read_me", where={"id": -1}).count() == 0  # no stream at all


def test_hostile_values_reach_bigquery_only_as_base64(fake, ray_session) -> None:
    project = _project(fake)
    project.write(_orders(3_000), "hostile")
    fake.requests.clear()
    assert project.read("hostile", where={"region": "x' OR '1'='1"}).count() == 1_000
    for value in HOSTILE[1:]:
        assert project.read("hostile", where={"region": value}).count() == 0
    restrictions = [r["row_restriction"] for r in fake.requests if r["kind"] == "CreateReadSession"]
    assert all("FROM_BASE64(" in text for text in restrictions)
    for value in HOSTILE:
        assert not any(value in text for text in restrictions), value
    assert _stored(fake, "hostile").num_rows == 3_000


def test_a_query_read_binds_its_parameters(fake, ray_session) -> None:
    project = _project(fake)
    project.write(_orders(500), "queried")
    fake.answer_with = "acme.sales.queried"
    fake.requests.clear()
    value = HOSTILE[0]
    query = "SELECT * FROM `sales.queried` WHERE region = @region"
    assert project.read(query=query, query_params={"region": value}).count() == 500
    job = next(r for r in fake.requests if r["kind"] == "query")["config"]["configuration"]
    assert job["query"]["query"] == query
    assert job["query"]["queryParameters"] == [
        {"name": "region", "parameterType": {"type": "STRING"}, "parameterValue": {"value": value}}
    ]


def test_rows_outside_the_slice_are_refused_before_any_job(fake, ray_session) -> None:
    project = _project(fake)
    project.write(
        _orders(400),
        "stray",
        partition=_slice("2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04"),
    )
    fake.requests.clear()
    with pytest.raises(StrayPartitionValuesError, match="outside the run's partitions"):
        project.write(_orders(400, first_id=9_000), "stray", partition=_slice("2024-01-01"))
    assert not [r for r in fake.requests if r["kind"] == "load"]
    assert _stored(fake, "stray").num_rows == 400


def test_a_failed_load_job_leaves_its_partition_and_says_what_was_replaced(
    fake, ray_session
) -> None:
    project = _project(fake)
    project.write(
        _orders(400),
        "typed",
        partition=_slice("2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04"),
    )
    before = _stored(fake, "typed")
    bad = _orders(400).filter(pc.field("day") == dt.date(2024, 1, 2))
    bad = bad.set_column(3, "amount", pa.array(["lots"] * bad.num_rows))
    with pytest.raises(WarehouseError) as raised:
        project.write(bad, "typed", partition=_slice("2024-01-02"))
    message = str(raised.value)
    assert (
        "BigQueryProject(acme/sales) table typed for asset 'orders', partition '2024-01-02'"
        in message
    )
    assert "typed$20240102 failed" in message and "amount has changed type" in message
    assert "nothing was written" in message
    assert _stored(fake, "typed").equals(before)


def test_a_string_partition_column_is_refused_with_what_to_do(fake, ray_session) -> None:
    project = _project(fake)
    text_days = _orders(40).set_column(1, "day", pa.array(["2024-01-01"] * 40))
    with pytest.raises(PartitionColumnError, match="'day' is string: cast it"):
        project.write(text_days, "text_days", partition=_slice("2024-01-01"))
    assert "acme.sales.text_days" not in fake.tables


def test_bad_input_is_a_clear_error_that_names_the_resource(fake, ray_session) -> None:
    project = _project(fake)
    with pytest.raises(WarehouseError) as missing:
        project.read("no_such_table")
    assert "BigQueryProject(acme/sales) table no_such_table" in str(missing.value)
    assert "Not found: Table acme:sales.no_such_table" in str(missing.value)
    assert not project.has_table("no_such_table")
    closed = _project(fake, api_endpoint=f"http://127.0.0.1:{_closed_port()}", retry_timeout_s=2)
    with pytest.raises(WarehouseError) as unreachable:
        closed.read("orders")
    assert "BigQueryProject(acme/sales) table orders" in str(unreachable.value)
    assert "Connection refused" in str(unreachable.value)
    with pytest.raises(WarehouseError, match="credentials_json is not JSON"):
        _project(fake, anonymous=False, credentials_json="canary-not-json").read("orders")


def _closed_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_canary_key_appears_nowhere(fake, ray_session, capfd) -> None:
    """A service account key given through dg.EnvVar: not in the event log, the metadata, the
    run config, the captured output, or the error of a failed step."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    canary = "canary-5be0c1a7-bigquery"
    info = {
        "type": "service_account",
        "project_id": "acme",
        "private_key_id": canary,
        "private_key": pem,
        "client_email": "etl@acme.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": f"{fake.rest_url}/token",
    }
    os.environ["RAY_ASSETS_TEST_BIGQUERY_KEY"] = json.dumps(info)
    try:

        @dg.asset
        def broken(bigquery: BigQueryProject) -> None:
            bigquery.read("orders")  # the token request fails: the fake has no /token

        instance = dg.DagsterInstance.ephemeral()
        resources = {
            "bigquery": _project(
                fake,
                anonymous=False,
                read_insecure=False,
                credentials_json=dg.EnvVar("RAY_ASSETS_TEST_BIGQUERY_KEY"),
            )
        }
        bad = dg.materialize([broken], resources=resources, instance=instance, raise_on_error=False)
    finally:
        del os.environ["RAY_ASSETS_TEST_BIGQUERY_KEY"]
    assert not bad.success
    texts = [str(record) for record in instance.all_logs(bad.run_id)]
    texts.append(str(instance.get_run_by_id(bad.run_id).run_config))
    captured = capfd.readouterr()
    texts += [captured.out, captured.err]
    failure = str(bad.get_step_failure_events()[0].event_specific_data.error)
    assert "BigQueryProject(acme/sales) table orders" in failure
    for text in [*texts, failure]:
        assert canary not in text and "BEGIN PRIVATE KEY" not in text
