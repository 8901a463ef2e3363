"""The Dagster UI in a real browser: `dagster dev` (webserver and daemon) on a loopback port with
the reference `workspace.yaml`, driven by headless Chromium through Playwright.

The test clicks what a data engineer clicks: the asset lineage, Materialize on one day of
`raw_orders`, a backfill of a range of days over two assets, then the asset page's row count,
columns, per-partition row counts and check results, and "Re-execute > From failure" on a run
that failed after its first asset committed. What the UI shows is compared with the
tables on disk. Screenshots go to `build/test-artifacts/ui/` (git-ignored), and one of them is
the README's picture.

Debian's `chromium` is the browser (`.ci/run` installs it). Playwright's own browser download
is not used.
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
import urllib.parse
from collections.abc import Iterator
from typing import Any

import dagster as dg
import pytest

from tests.conftest import delta_log_rows, delta_version, error_chain_text
from tests.dagster_services import REPO, location_environment, start_service, stop_service
from tests.local_servers import free_port, wait_until_listening
from tests.test_daemon import wait_for

ARTIFACTS = REPO / "build" / "test-artifacts" / "ui"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ROWS_PER_DAY = 200
# days inside the launch dialog's default window (the last 90 days), away from the latest day
# that the daily schedule and the automation conditions care about
TODAY = dt.datetime.now(dt.timezone.utc).date()
ONE_DAY = str(TODAY - dt.timedelta(days=12))
RANGE = [str(TODAY - dt.timedelta(days=d)) for d in (10, 9, 8)]
BAD_DAY = str(TODAY - dt.timedelta(days=20))
"""The day whose export is broken (`RAY_ASSETS_BAD_ROWS_DAY`): `clean_orders`' blocking checks
refuse it, so a run of it fails after `raw_orders` committed."""


@pytest.fixture(scope="module")
def ui(ray_session: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """`dagster dev` on a free loopback port, over a fresh instance and fresh tables; its runs
    join the test session's Ray."""
    if CHROMIUM is None:
        pytest.skip("no chromium on this machine: install Debian's `chromium` (`.ci/run` does)")
    root = tmp_path_factory.mktemp("ui")
    home = root / "home"
    home.mkdir()
    shutil.copyfile(REPO / "dagster.yaml", home / "dagster.yaml")
    environment = {
        **location_environment(home, root, ray_session, ROWS_PER_DAY),
        "RAY_ASSETS_BAD_ROWS_DAY": BAD_DAY,
    }
    with dg.DagsterInstance.from_config(str(home)):
        pass  # the instance's storage, created once before the webserver and daemon race for it
    port = free_port()
    log = (root / "dagster-dev.log").open("w+b")
    process = start_service(
        ["dagster", "dev", "-h", "127.0.0.1", "-p", str(port), "-w", str(REPO / "workspace.yaml")],
        environment,
        log,
    )
    try:
        wait_until_listening(port, process, log, "dagster dev")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        yield {"url": f"http://127.0.0.1:{port}", "home": home, "root": root, "log": log}
    finally:
        # dagster dev stops its webserver and daemon, but can wait a minute on a daemon thread;
        # the instance is thrown away anyway
        stop_service(process, timeout_s=15)
        log.close()


@pytest.fixture(scope="module")
def page(ui: dict[str, Any]) -> Iterator[Any]:
    """A headless Chromium page on the webserver; Dagster's one-time community dialog, which
    can cover any page, is dismissed whenever it shows."""
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=30_000)  # a page's data arrives by GraphQL, slower under load
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.set_default_timeout(60_000)
        page.add_locator_handler(
            page.get_by_text("Join the Dagster community"),
            lambda: page.get_by_role("button", name="Skip").click(),
        )
        try:
            yield page
        finally:
            browser.close()


def shot(page: Any, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def finished_run(ui: dict[str, Any], run_id_prefix: str) -> dg.DagsterRun | None:
    with dg.DagsterInstance.from_config(str(ui["home"])) as instance:
        runs = [r for r in instance.get_runs(limit=20) if r.run_id.startswith(run_id_prefix)]
    return runs[0] if runs and runs[0].is_finished else None


def launch_dialog_partitions(page: Any, selection: str) -> Any:
    """Type a partition selection (`2024-01-02`, `[2024-01-02...2024-01-05]`) into the open
    launch dialog, as a user does; the dialog."""
    dialog = page.get_by_role("dialog")
    box = dialog.get_by_placeholder("No matching partitions")
    box.fill(selection)
    box.press("Enter")
    return dialog


def launch_one_day(ui: dict[str, Any], page: Any, day: str) -> dg.DagsterRun:
    """Pick `day` in the open launch dialog, launch its one run, and wait for the run to end."""
    from playwright.sync_api import expect

    dialog = launch_dialog_partitions(page, day)
    expect(dialog.get_by_text("1 partition", exact=True)).to_be_visible()
    dialog.get_by_role("button", name="Launch 1 run").click()
    toast = page.get_by_text(re.compile(r"Launched run [0-9a-f]{8}"))
    prefix = re.search(r"[0-9a-f]{8}", toast.inner_text()).group(0)
    return wait_for(lambda: finished_run(ui, prefix), f"the run {prefix} launched from the UI")


@pytest.mark.slow
def test_the_asset_lineage_shows_the_pipeline_with_its_kinds(ui, page) -> None:
    from playwright.sync_api import expect

    page.goto(f"{ui['url']}/locations/__repository__@definitions/asset-groups/sales/lineage")
    for asset in ("raw_orders", "clean_orders", "customers", "orders_enriched"):
        expect(page.get_by_text(asset, exact=True).first).to_be_visible()
    expect(page.get_by_text("Delta Lake").first).to_be_visible()
    expect(page.get_by_text("Ray", exact=True).first).to_be_visible()
    shot(page, "asset-lineage")


@pytest.mark.slow
def test_one_day_materialized_from_the_asset_page(ui, page) -> None:
    from playwright.sync_api import expect

    page.goto(f"{ui['url']}/assets/raw_orders")
    page.get_by_role("button", name="Materialize…").click()
    run = launch_one_day(ui, page, ONE_DAY)
    assert run.status == dg.DagsterRunStatus.SUCCESS
    assert run.tags["dagster/partition"] == ONE_DAY

    page.goto(f"{ui['url']}/runs/{run.run_id}")
    expect(page.get_by_text("Success", exact=True).first).to_be_visible()
    page.goto(f"{ui['url']}/assets/raw_orders")
    status = page.get_by_text("Latest materialization").locator("..")
    expect(status).to_contain_text(ONE_DAY)
    expect(page.get_by_text("Row count").locator("..")).to_contain_text(str(ROWS_PER_DAY))
    assert delta_log_rows(ui["root"] / "tables" / "raw_orders") == {ONE_DAY: ROWS_PER_DAY}
    shot(page, "raw-orders-asset-page")


@pytest.mark.slow
def test_a_range_backfill_launched_from_the_lineage_and_read_on_the_asset_page(ui, page) -> None:
    from playwright.sync_api import expect

    selection = urllib.parse.quote("key:raw_orders or key:clean_orders")
    page.goto(f"{ui['url']}/asset-groups~{selection}/")
    page.get_by_role("button", name="Materialize all…").click()
    dialog = launch_dialog_partitions(page, f"[{RANGE[0]}...{RANGE[-1]}]")
    expect(dialog.get_by_text("3 partitions", exact=True)).to_be_visible()
    shot(page, "backfill-dialog")
    dialog.get_by_role("button", name="Launch backfill").click()

    def backfill_done() -> Any:
        with dg.DagsterInstance.from_config(str(ui["home"])) as instance:
            backfills = instance.get_backfills()
            if not backfills or not backfills[0].status.value.startswith("COMPLETED"):
                return None
            tag = {"dagster/backfill": backfills[0].backfill_id}
            return backfills[0], instance.get_runs(filters=dg.RunsFilter(tags=tag))

    backfill, runs = wait_for(backfill_done, "the backfill launched from the UI")
    assert backfill.status.value == "COMPLETED_SUCCESS"
    assert [r.status for r in runs] == [dg.DagsterRunStatus.SUCCESS]  # a single-run backfill

    page.goto(f"{ui['url']}/runs/b/{backfill.backfill_id}")
    expect(page.get_by_text("Succeeded", exact=True).first).to_be_visible()
    expect(page.get_by_text("100% completed")).to_have_count(2)  # both assets, every day
    shot(page, "backfill")

    rows = delta_log_rows(ui["root"] / "tables" / "clean_orders")
    assert set(rows) == set(RANGE)
    page.goto(f"{ui['url']}/assets/clean_orders")
    expect(page.get_by_text("Row count").locator("..")).to_contain_text(f"{sum(rows.values()):,}")
    columns = page.get_by_text("Column name").locator("xpath=ancestor::table[1]")
    for column in ("order_id", "customer_id", "amount", "status"):
        expect(columns.get_by_text(column, exact=True)).to_be_visible()
    shot(page, "clean-orders-asset-page")

    for day in RANGE:  # each day's own row count, as the table's log has it
        page.goto(f"{ui['url']}/assets/clean_orders?view=partitions&partition={day}")
        key = page.get_by_text("dagster/partition_row_count", exact=True)
        row_count = key.locator("xpath=ancestor::tr[1]")
        expect(row_count).to_contain_text(str(rows[day]))
    shot(page, "clean-orders-partitions")

    page.goto(f"{ui['url']}/assets/clean_orders?view=checks")
    checks = page.get_by_text(re.compile(r"^Checks \(\d+\)$"))
    count = int(re.search(r"\d+", checks.inner_text()).group(0))
    assert count >= 3
    expect(page.get_by_text("Succeeded", exact=True)).to_have_count(count)
    shot(page, "clean-orders-checks")

    page.goto(f"{ui['url']}/locations/__repository__@definitions/asset-groups/sales/lineage")
    expect(page.get_by_text(f"{count} / {count} Passed")).to_be_visible()
    shot(page, "asset-lineage-after-backfill")


@pytest.mark.slow
def test_a_failed_run_re_executed_from_failure_in_the_ui_runs_only_its_failed_step(
    ui, page
) -> None:
    """A run of `raw_orders` and `clean_orders` for the broken day fails at `clean_orders`'
    blocking checks, after `raw_orders` committed the day. "Re-execute > From failure" on the
    run's page launches a run of `clean_orders` alone: the committed day is not written again,
    and `clean_orders`, refused again by the same checks, still holds nothing of that day."""
    from playwright.sync_api import expect

    selection = urllib.parse.quote("key:raw_orders or key:clean_orders")
    page.goto(f"{ui['url']}/asset-groups~{selection}/")
    page.get_by_role("button", name="Materialize all…").click()
    failed = launch_one_day(ui, page, BAD_DAY)
    assert failed.status == dg.DagsterRunStatus.FAILURE
    tables = ui["root"] / "tables"
    assert delta_log_rows(tables / "raw_orders")[BAD_DAY] == ROWS_PER_DAY
    raw_version = delta_version(tables / "raw_orders")

    page.goto(f"{ui['url']}/runs/{failed.run_id}")
    expect(page.get_by_text("Failure", exact=True).first).to_be_visible()
    expect(page.get_by_text("Succeeded (1)")).to_be_visible()  # the run's steps have loaded
    shot(page, "failed-run")
    primary = page.get_by_role("button", name="Re-execute all (*)")
    primary.locator("xpath=..").get_by_role("button").last.click()  # the menu beside it
    shot(page, "re-execute-menu")
    page.get_by_role("menuitem", name=re.compile("From failure")).click()

    def child_run() -> dg.DagsterRun | None:
        with dg.DagsterInstance.from_config(str(ui["home"])) as instance:
            tag = {"dagster/parent_run_id": failed.run_id}
            runs = instance.get_runs(filters=dg.RunsFilter(tags=tag))
        return runs[0] if runs and runs[0].is_finished else None

    child = wait_for(child_run, "the run re-executed from failure in the UI")
    with dg.DagsterInstance.from_config(str(ui["home"])) as instance:
        started = {
            entry.step_key
            for entry in instance.all_logs(child.run_id, of_type=dg.DagsterEventType.STEP_START)
        }
        failures = [
            error_chain_text(entry.dagster_event.step_failure_data.error)
            for entry in instance.all_logs(child.run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
        ]
    assert started == {"clean_orders"}  # the committed step is kept, not run again
    # the same checks refuse the same rows, and say which day
    assert child.status == dg.DagsterRunStatus.FAILURE
    assert len(failures) == 1 and BAD_DAY in failures[0] and "unique" in failures[0], failures
    assert delta_version(tables / "raw_orders") == raw_version
    assert delta_log_rows(tables / "raw_orders")[BAD_DAY] == ROWS_PER_DAY
    clean = tables / "clean_orders"  # no commit at all when this test runs alone
    assert not list(clean.glob("_delta_log/*.json")) or BAD_DAY not in delta_log_rows(clean)
    shot(page, "re-executed-from-failure")
