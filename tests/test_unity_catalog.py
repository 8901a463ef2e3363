"""Unity Catalog tables by name (`catalog.schema.table`) as observable source assets.

No Unity Catalog server installs here, so this is a contract test against `tests/uc_fake.py`, a
local stand-in for the REST API that Databricks and the open-source unitycatalog server share.
The fake serves real Delta tables: a local one, and one on the S3 server of `tests/s3_server.py`
(checking credentials), for which it vends temporary STS credentials of that server.
"""

import json
from collections.abc import Iterator

import dagster as dg
import pyarrow as pa
import pytest
from conftest import failure_text
from local_servers import free_port
from s3_server import REGION, S3Server, running_server
from uc_fake import API, FakeTable, FakeUnityCatalog, running_catalog

from ray_assets import DeltaIOManager, RayResource, ray_asset
from ray_assets.errors import ObjectStoreError
from ray_assets.unity_catalog import (
    UNITY_CATALOG_KEY,
    UnityCatalogClient,
    UnityCatalogError,
    UnityCatalogSource,
    credential_options,
    unity_catalog_table,
)

TOKEN = "dapi-canary-uc-token-7f3a9e21c4"  # must never appear in any error, metadata or log
DAILY = dg.DailyPartitionsDefinition(start_date="2024-01-01")
COLUMNS = [
    {"name": "day", "type_text": "string", "type_name": "STRING", "position": 0},
    {"name": "id", "type_text": "bigint", "type_name": "LONG", "position": 1},
    {"name": "amount", "type_text": "double", "type_name": "DOUBLE", "position": 2},
    {"name": "note", "type_text": "string", "type_name": "STRING", "position": 3},
]


@pytest.fixture(scope="module")
def instance() -> Iterator[dg.DagsterInstance]:
    """One Dagster instance for the module's runs (its event log is what the secret checks
    read)."""
    with dg.instance_for_test() as shared:
        yield shared


@pytest.fixture
def catalog() -> Iterator[FakeUnityCatalog]:
    with running_catalog(TOKEN) as fake:
        yield fake


@pytest.fixture
def from_env(monkeypatch, catalog) -> dict[str, dg.EnvVar]:
    """Host and token as a deployment gives them: environment variables of the run."""
    monkeypatch.setenv("UC_HOST", catalog.host)
    monkeypatch.setenv("UC_TOKEN", TOKEN)
    return {"host": dg.EnvVar("UC_HOST"), "token": dg.EnvVar("UC_TOKEN")}


def orders(days: list[str], rows: int, first_id: int = 0) -> pa.Table:
    count = rows * len(days)
    return pa.table(
        {
            "day": [d for d in days for _ in range(rows)],
            "id": list(range(first_id, first_id + count)),
            "amount": [i * 0.5 for i in range(first_id, first_id + count)],
            "note": ["x"] * count,
        }
    )


def write_elsewhere(uri: str, table: pa.Table, s3: S3Server | None = None) -> None:
    """What the system that owns the table does: write it with deltalake directly."""
    from deltalake import write_deltalake

    options = s3.storage_options if s3 is not None else None
    write_deltalake(uri, table, partition_by=["day"], mode="append", storage_options=options)


def observe(asset, resources, instance, **kwargs) -> dg.ExecuteInProcessResult:
    """What a schedule or the UI's "Observe" does: a run of a job that selects the source."""
    defs = dg.Definitions(
        assets=[asset],
        jobs=[dg.define_asset_job("observe_it", selection=[asset.key])],
        resources=resources,
    )
    return defs.resolve_job_def("observe_it").execute_in_process(instance=instance, **kwargs)


def observations(result: dg.ExecuteInProcessResult) -> list[dg.AssetObservation]:
    return [
        event.event_specific_data.asset_observation
        for event in result.all_events
        if event.event_type_value == "ASSET_OBSERVATION"
    ]


def logged_text(instance) -> str:
    """Everything the instance stored about every run: events, metadata, errors, log lines."""
    return "\n".join(
        dg.serialize_value(entry)
        for run in instance.get_runs()
        for entry in instance.all_logs(run.run_id)
    )


def test_observations_resolve_the_name_and_report_version_rows_and_columns(
    catalog, from_env, instance, tmp_path
) -> None:
    uri = str(tmp_path / "lake" / "orders")
    write_elsewhere(uri, orders(["2024-01-01"], rows=4))
    table = catalog.add(FakeTable("main.sales.orders", f"file://{uri}", columns=COLUMNS))
    feed = unity_catalog_table("orders", "main.sales.orders", **from_env)
    resources = {"delta_io_manager": DeltaIOManager(root_uri=str(tmp_path / "ours"))}
    before = observe(feed, resources, instance)
    write_elsewhere(uri, orders(["2024-01-02"], rows=3, first_id=4))
    after = observe(feed, resources, instance)
    text = logged_text(instance)
    ((first,), (second,)) = observations(before), observations(after)
    assert first.tags["dagster/data_version"] == "0"
    assert second.tags["dagster/data_version"] == "1"  # a new version: downstream can react
    assert second.metadata["dagster/row_count"].value == 7
    assert second.metadata["delta/table_version"].value == 1
    assert second.metadata["dagster/table_name"].value == "main.sales.orders"
    assert second.metadata["unity_catalog/table_id"].value == table.table_id
    assert second.metadata["dagster/uri"].value == uri
    schema = second.metadata["dagster/column_schema"].value
    assert [(c.name, c.type) for c in schema.columns][:2] == [("day", "string"), ("id", "bigint")]
    # resolved at each observation: two requests each, nothing cached between runs
    assert [(r.method, r.path) for r in catalog.requests] == 2 * [
        ("GET", f"{API}/tables/main.sales.orders"),
        ("POST", f"{API}/temporary-table-credentials"),
    ]
    assert TOKEN not in text


def test_the_requests_follow_the_unity_catalog_rest_contract(catalog, instance, tmp_path) -> None:
    uri = str(tmp_path / "lake" / "orders")
    write_elsewhere(uri, orders(["2024-01-01"], rows=2))
    table = catalog.add(FakeTable("main.sales.orders", f"file://{uri}"))
    # plain strings work too (a token in code is for tests and notebooks only)
    feed = unity_catalog_table("orders", "main.sales.orders", host=catalog.host + "/", token=TOKEN)
    resources = {"delta_io_manager": DeltaIOManager(root_uri=str(tmp_path / "ours"))}
    assert observe(feed, resources, instance).success
    get, post = catalog.requests
    assert (get.method, get.path, get.body) == ("GET", f"{API}/tables/main.sales.orders", None)
    assert (post.method, post.path) == ("POST", f"{API}/temporary-table-credentials")
    assert post.body == {"table_id": table.table_id, "operation": "READ"}
    assert post.headers["content-type"] == "application/json"
    for request in (get, post):
        assert request.headers["authorization"] == f"Bearer {TOKEN}"
        assert request.headers["accept"] == "application/json"


def test_the_code_location_loads_without_asking_unity_catalog(catalog, monkeypatch) -> None:
    monkeypatch.delenv("UC_TOKEN", raising=False)
    feed = unity_catalog_table(
        "orders",
        "main.sales.orders",
        host=dg.EnvVar("UC_HOST"),  # not even set
        token=dg.EnvVar("UC_TOKEN"),
        partitions_def=DAILY,
        partition_column="day",
    )
    defs = dg.Definitions(
        assets=[feed], resources={"delta_io_manager": DeltaIOManager(root_uri="/nowhere")}
    )
    dg.Definitions.validate_loadable(defs)
    spec = defs.get_repository_def().asset_graph.get(feed.key)
    assert spec.metadata[UNITY_CATALOG_KEY] == {
        "full_name": "main.sales.orders",
        "host": "$UC_HOST",
        "token": "environment variable UC_TOKEN",
    }
    assert catalog.requests == []
    source = UnityCatalogSource("main.sales.orders", host=catalog.host, token=TOKEN)
    assert TOKEN not in repr(source) and TOKEN not in repr(UnityCatalogClient(catalog.host, TOKEN))
    with pytest.raises(ValueError, match="catalog.schema.table"):
        unity_catalog_table("bad", "sales.orders", host="h", token="t")


ERRORS = {
    # case: (full_name, token, what the message says)
    "missing table": ("main.sales.nope", TOKEN, "does not exist in Unity Catalog"),
    "parquet table": ("main.sales.legacy", TOKEN, "data_source_format is PARQUET"),
    "bad token": ("main.sales.orders", "dapi-wrong-token-canary-0b9e", "did not accept the token"),
    "forbidden": ("main.sales.orders", "dapi-no-grants-canary-55aa", "refused the table"),
    "unreachable host": ("main.sales.orders", TOKEN, "could not be reached"),
    "unset token": ("main.sales.orders", None, "environment variable UC_TOKEN"),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_each_failure_names_the_asset_and_table_and_never_the_token(
    case, catalog, monkeypatch, tmp_path
) -> None:
    """What an observation and a load resolve with (`UnityCatalogSource.resolve`), case by
    case; the Dagster runs around it are the next test's."""
    full_name, token, expected = ERRORS[case]
    catalog.add(FakeTable("main.sales.orders", f"file://{tmp_path}/orders"))
    catalog.add(FakeTable("main.sales.legacy", f"file://{tmp_path}/legacy", "PARQUET"))
    catalog.forbidden_tokens.add("dapi-no-grants-canary-55aa")
    host = catalog.host if case != "unreachable host" else f"http://127.0.0.1:{free_port()}"
    if token is None:
        monkeypatch.delenv("UC_TOKEN", raising=False)
    source = UnityCatalogSource(full_name, host=host, token=token or dg.EnvVar("UC_TOKEN"))
    with pytest.raises(UnityCatalogError) as raised:
        source.resolve(asset="orders_feed")
    message = str(raised.value)
    assert expected in message
    assert message.startswith(f"Asset 'orders_feed' (Unity Catalog table '{full_name}'): ")
    assert TOKEN not in message and (token is None or token not in message)
    if case in ("missing table", "bad token", "forbidden"):
        status, code = {
            "missing table": (404, "TABLE_DOES_NOT_EXIST"),
            "bad token": (401, "UNAUTHENTICATED"),
            "forbidden": (403, "PERMISSION_DENIED"),
        }[case]
        assert (raised.value.status, raised.value.error_code) == (status, code)


def test_a_failed_observation_and_a_failed_read_name_the_table_never_the_token(
    catalog, from_env, instance, tmp_path
) -> None:
    wrong = "dapi-wrong-token-canary-0b9e"
    refused = unity_catalog_table(
        "orders_feed", "main.sales.orders", host=catalog.host, token=wrong
    )
    resources = {"delta_io_manager": DeltaIOManager(root_uri=str(tmp_path / "ours"))}
    with pytest.raises(UnityCatalogError, match="did not accept the token") as raised:
        observe(refused, resources, instance)
    assert "Asset 'orders_feed' (Unity Catalog table 'main.sales.orders')" in str(raised.value)

    gone = unity_catalog_table("gone_feed", "main.sales.gone", **from_env)

    @dg.asset  # the load fails before any pipeline: no need for Ray here
    def copy(gone_feed) -> None:
        pass

    result = dg.materialize(
        [gone, copy],
        selection=[copy],
        resources=resources,
        instance=instance,
        raise_on_error=False,
    )
    assert not result.success
    failure = failure_text(result)
    assert "Asset 'gone_feed' (Unity Catalog table 'main.sales.gone')" in failure
    assert "TABLE_DOES_NOT_EXIST" in failure
    text = logged_text(instance)
    for secret in (TOKEN, wrong):
        assert secret not in str(raised.value) and secret not in failure and secret not in text


# ------------------------------------------------------------------------- vended S3 credentials
@pytest.fixture(scope="module")
def s3_with_sts() -> Iterator[tuple[S3Server, dict[str, str]]]:
    """An S3 server that checks every signature, and temporary credentials of an STS role
    session on it: what Unity Catalog vends for a table on S3."""
    import boto3

    with running_server("uc-lake", check_credentials=True) as server:
        own = {
            "endpoint_url": server.endpoint,
            "aws_access_key_id": server.access_key,
            "aws_secret_access_key": server.secret_key,
            "region_name": REGION,
        }
        everything = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
        }
        iam = boto3.client("iam", **own)
        role = iam.create_role(
            RoleName="uc-reader",
            AssumeRolePolicyDocument=json.dumps(everything),
        )["Role"]
        iam.put_role_policy(
            RoleName="uc-reader", PolicyName="read", PolicyDocument=json.dumps(everything)
        )
        vended = boto3.client("sts", **own).assume_role(
            RoleArn=role["Arn"], RoleSessionName="unity-catalog"
        )["Credentials"]
        yield (
            server,
            {
                "access_key_id": vended["AccessKeyId"],
                "secret_access_key": vended["SecretAccessKey"],
                "session_token": vended["SessionToken"],
            },
        )


def test_a_downstream_ray_asset_reads_exact_rows_of_its_partition_with_vended_credentials(
    ray_session, catalog, from_env, s3_with_sts, instance, tmp_path
) -> None:
    server, vended = s3_with_sts
    uri = server.uri(tmp_path.name, "payments")
    write_elsewhere(uri, orders(["2024-01-01", "2024-01-02", "2024-01-03"], rows=5), server)
    catalog.add(
        FakeTable(
            "main.finance.payments",
            uri,
            columns=COLUMNS,
            credentials={"aws_temp_credentials": vended},
        )
    )
    # Neither the IO manager nor the asset holds S3 credentials: only where the server is.
    endpoint = {"AWS_ENDPOINT_URL": server.endpoint, "AWS_REGION": REGION, "AWS_ALLOW_HTTP": "true"}
    feed = unity_catalog_table(
        "payments",
        "main.finance.payments",
        partitions_def=DAILY,
        partition_column="day",
        storage_options=endpoint,
        **from_env,
    )
    seen = {}

    @ray_asset(
        partitions_def=DAILY,
        partition_column="day",
        ins={"payments": dg.AssetIn(metadata={"columns": ["id", "amount"]})},
    )
    def payments_copy(payments: pa.Table):
        seen["table"] = payments
        return payments

    resources = {
        "ray": RayResource(),
        "delta_io_manager": DeltaIOManager(root_uri=str(tmp_path / "ours")),
    }
    observed = observe(feed, resources, instance)
    copied = dg.materialize(
        [feed, payments_copy],
        selection=[payments_copy],
        partition_key="2024-01-02",
        resources=resources,
        instance=instance,
    )
    text = logged_text(instance)
    versions = {o.partition: o.tags["dagster/data_version"] for o in observations(observed)}
    assert set(versions) == {"2024-01-01", "2024-01-02", "2024-01-03"}  # one per partition
    assert copied.success
    rows = seen["table"].sort_by("id")
    assert sorted(rows.column_names) == ["amount", "day", "id"]  # projected (+ partition column)
    assert rows.column("id").to_pylist() == [5, 6, 7, 8, 9]  # exactly that day's rows
    assert rows.column("amount").to_pylist() == [2.5, 3.0, 3.5, 4.0, 4.5]
    assert set(rows.column("day").to_pylist()) == {"2024-01-02"}
    metadata = copied.asset_materializations_for_node("payments_copy")[0].metadata
    assert metadata["dagster/partition_row_count"].value == 5
    # each observation and each load resolved the name and got credentials anew
    assert [r.method for r in catalog.requests] == ["GET", "POST", "GET", "POST"]
    for secret in (TOKEN, vended["secret_access_key"], vended["session_token"], server.secret_key):
        assert secret not in text


def test_expired_vended_credentials_fail_naming_the_table_not_the_secret(
    ray_session, catalog, from_env, s3_with_sts, instance, tmp_path
) -> None:
    server, vended = s3_with_sts
    stale = {**vended, "session_token": vended["session_token"][::-1]}
    uri = server.uri(tmp_path.name, "stale")
    catalog.add(FakeTable("main.finance.stale", uri, credentials={"aws_temp_credentials": stale}))
    endpoint = {"AWS_ENDPOINT_URL": server.endpoint, "AWS_REGION": REGION, "AWS_ALLOW_HTTP": "true"}
    feed = unity_catalog_table("stale", "main.finance.stale", storage_options=endpoint, **from_env)
    resources = {"delta_io_manager": DeltaIOManager(root_uri=str(tmp_path / "ours"))}
    with pytest.raises(ObjectStoreError) as raised:
        observe(feed, resources, instance)
    message = str(raised.value)
    assert message.startswith("Asset 'stale' (Unity Catalog table 'main.finance.stale'): ")
    for secret in (TOKEN, stale["secret_access_key"], stale["session_token"]):
        assert secret not in message


# ------------------------------------------------------------------------- the credential mapping
def test_vended_credentials_become_delta_rs_storage_options() -> None:
    aws = {"access_key_id": "ASIA1", "secret_access_key": "s3cr3t", "session_token": "tok"}
    assert credential_options({"aws_temp_credentials": aws, "expiration_time": 1}) == (
        "aws",
        {
            "AWS_ACCESS_KEY_ID": "ASIA1",
            "AWS_SECRET_ACCESS_KEY": "s3cr3t",
            "AWS_SESSION_TOKEN": "tok",
        },
    )
    sas = {"azure_user_delegation_sas": {"sas_token": "?sv=2024&sig=abc"}}
    assert credential_options(sas) == ("azure", {"AZURE_STORAGE_SAS_TOKEN": "sv=2024&sig=abc"})
    none = {"expiration_time": 1, "url": "file:///t", "some_new_field": "x"}
    assert credential_options(none) == ("none", {})  # a location that needs no credentials
    with pytest.raises(UnityCatalogError, match="service-account") as raised:
        credential_options({"gcp_oauth_token": {"oauth_token": "ya29.secret"}}, "table t")
    assert "ya29.secret" not in str(raised.value)
    with pytest.raises(UnityCatalogError, match="r2_temp_credentials"):
        credential_options({"r2_temp_credentials": {"access_key_id": "x"}})
