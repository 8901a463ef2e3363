"""Production Dagster: the instance in PostgreSQL, the webserver and the daemon as separate
processes (`resources/dagster.postgres.yaml`, documented in the README).

A real PostgreSQL server holds the instance. The webserver submits a partitioned run through its
GraphQL API, as the UI's Materialize button does. The run queue (in PostgreSQL) is then read by
the daemon, which launches the run in a process of its own. The run's events are written back to
PostgreSQL and the webserver reads them from there. The processes share nothing but the database
and the environment, and the credentials never show in what they print or store.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import urlsplit

import dagster as dg
import pytest
import yaml

from tests.conftest import delta_log_rows
from tests.dagster_services import REPO, location_environment, running_service
from tests.local_servers import free_port, wait_until_listening
from tests.test_daemon import dagster, wait_for

PRODUCTION_YAML = REPO / "resources" / "dagster.postgres.yaml"
ROWS_PER_DAY = 150


def test_the_production_instance_differs_from_the_projects_only_in_storage() -> None:
    """One `dagster.yaml` for development and one for production would drift apart; this keeps
    every section but the storage the same."""
    production = yaml.safe_load(PRODUCTION_YAML.read_text())
    development = yaml.safe_load((REPO / "dagster.yaml").read_text())
    assert set(production.pop("storage")) == {"postgres"}
    assert production == development


def fresh_database(server_url: str, name: str) -> None:
    """A database of its own for the instance on the tests' server."""
    import psycopg2

    connection = psycopg2.connect(server_url)
    connection.autocommit = True  # CREATE DATABASE cannot run in a transaction
    with connection.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS {name}")
        cursor.execute(f"CREATE DATABASE {name}")
    connection.close()


def table_counts(server_url: str, database: str) -> dict[str, int]:
    """Rows in Dagster's run, event and instigator tables, read from PostgreSQL directly."""
    import psycopg2

    url = urlsplit(server_url)._replace(path=f"/{database}").geturl()
    connection = psycopg2.connect(url)
    with connection, connection.cursor() as cursor:
        counts = {}
        for table in ("runs", "event_logs", "instigators"):
            cursor.execute(f"SELECT count(*) FROM {table}")
            counts[table] = cursor.fetchone()[0]
    connection.close()
    return counts


@pytest.mark.slow
def test_webserver_and_daemon_share_an_instance_in_postgresql(
    postgres, ray_session: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dagster_graphql import DagsterGraphQLClient

    server = urlsplit(postgres.url)
    fresh_database(postgres.url, "dagster_production")
    home = tmp_path / "home"
    home.mkdir()
    shutil.copyfile(PRODUCTION_YAML, home / "dagster.yaml")
    credentials = {
        "DAGSTER_PG_HOST": server.hostname,
        "DAGSTER_PG_PORT": str(server.port),
        "DAGSTER_PG_USERNAME": server.username,
        "DAGSTER_PG_PASSWORD": server.password,
        "DAGSTER_PG_DB": "dagster_production",
    }
    for name, value in credentials.items():  # this process opens the instance too, at the end
        monkeypatch.setenv(name, value)
    environment = location_environment(home, tmp_path, ray_session, ROWS_PER_DAY)
    workspace = ["-w", str(REPO / "workspace.yaml")]
    port = free_port()
    with (tmp_path / "services.log").open("w+b") as log:
        # the schedule state is in PostgreSQL too: started here, seen by the daemon
        dagster(["sensor", "start", "landing_sensor", *workspace], environment)
        with (
            running_service(["dagster-daemon", "run", *workspace], environment, log),
            running_service(
                ["dagster-webserver", "-h", "127.0.0.1", "-p", str(port), *workspace],
                environment,
                log,
            ) as webserver,
        ):
            wait_until_listening(port, webserver, log, "dagster-webserver")
            client = DagsterGraphQLClient("127.0.0.1", port_number=port)
            run_id = client.submit_job_execution(
                "__ASSET_JOB",
                asset_selection=[dg.AssetKey("raw_orders")],
                tags={"dagster/partition": "2024-06-01"},
            )

            def finished() -> dg.DagsterRunStatus | None:
                status = client.get_run_status(run_id)
                return status if status.value in {"SUCCESS", "FAILURE", "CANCELED"} else None

            status = wait_for(finished, f"run {run_id} submitted through the webserver")
            log.seek(0)
            output = log.read().decode(errors="replace")
            assert status == dg.DagsterRunStatus.SUCCESS, output[-3000:]

    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert instance.get_materialized_partitions(dg.AssetKey("raw_orders")) == {"2024-06-01"}
        run = instance.get_run_by_id(run_id)
        entries = instance.all_logs(run_id)
        states = {state.name: state for state in instance.all_instigator_state()}
    events = "\n".join(str(entry) for entry in entries)
    assert run.tags.get("dagster/partition") == "2024-06-01"
    # the webserver queued it; only the daemon's run queue starts a queued run
    kinds = [entry.dagster_event_type for entry in entries]
    assert (
        kinds.index(dg.DagsterEventType.RUN_ENQUEUED)
        < kinds.index(dg.DagsterEventType.RUN_STARTING)
        < kinds.index(dg.DagsterEventType.RUN_SUCCESS)
    )
    assert states["landing_sensor"].status.value == "RUNNING"
    counts = table_counts(postgres.url, "dagster_production")
    assert counts["runs"] >= 1 and counts["event_logs"] > 10 and counts["instigators"] >= 1
    assert delta_log_rows(tmp_path / "tables" / "raw_orders") == {"2024-06-01": ROWS_PER_DAY}
    for text in (output, events, (home / "dagster.yaml").read_text()):
        assert server.password not in text
