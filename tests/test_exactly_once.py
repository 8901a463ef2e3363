"""Exactly once when writers race: two real processes commit the same partitions at once.

Both processes connect to the suite's Ray, execute their pipelines, and meet at a barrier right
before the commit of every round, so each round is a true race on one partition: a new one
(where delta-rs alone lets both commits land and doubles the partition), or one that already
holds rows (where delta-rs alone lets the last writer win silently). Afterwards every
partition must hold exactly one writer's rows, and the write that lost must have failed or
been told.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ray_assets import DeltaStore, PartitionSlice
from tests.conftest import delta_log_rows
from tests.race_writers import ROWS_BY_WRITER, day_of, race

ROUNDS = 8
DAILY = dg.DailyPartitionsDefinition(start_date="2024-01-01")


@pytest.fixture(scope="module")
def races(ray_session, tmp_path_factory) -> dict[str, Any]:
    """Run every race scenario once with two writer processes; outcomes by scenario and round."""
    root = tmp_path_factory.mktemp("races")
    same_types = {"a": "float64", "b": "float64"}

    def scenario(name: str, mode: str, rounds: int, **extra: Any) -> dict[str, Any]:
        return {"name": name, "mode": mode, "uri": str(root / name), "rounds": rounds} | {
            "amount_type": same_types,
            **extra,
        }

    scenarios = [
        scenario("warn", "warn", ROUNDS),
        scenario("fail", "fail", ROUNDS),
        scenario("warn-existing", "warn", ROUNDS // 2, same_day=True),
        scenario("fail-existing", "fail", ROUNDS // 2, same_day=True),
        # a fresh table per round, created by both writers at once with different types
        scenario(
            "types",
            "warn",
            ROUNDS // 2,
            uri=str(root / "types-{round}"),
            amount_type={"a": "float64", "b": "int64"},
        ),
    ]
    outcomes = race(ray_session, scenarios)
    return {"outcomes": outcomes, "scenarios": {s["name"]: s for s in scenarios}}


def writers_in(uri: str, day: str) -> list[str]:
    partition = PartitionSlice.from_keys(DAILY, [day], "order_date", asset_key="orders")
    return [row["writer"] for row in DeltaStore(uri).read(partition, ["writer"]).take_all()]


def final_round(outcomes: dict[int, dict[str, dict]], round_index: int, same_day: bool) -> bool:
    """Whether the table still shows this round's partition as the round left it."""
    return not same_day or round_index == max(outcomes)


@pytest.mark.parametrize("name", ["warn", "warn-existing"])
def test_racing_warn_writers_leave_one_writers_rows_and_the_last_one_is_told(races, name) -> None:
    scenario = races["scenarios"][name]
    counts = delta_log_rows(scenario["uri"])
    outcomes = races["outcomes"][name]
    for round_index, outcome in outcomes.items():
        day = day_of(0 if scenario.get("same_day") else round_index)
        assert {o["status"] for o in outcome.values()} == {"ok"}, outcome
        last = max(outcome, key=lambda w: outcome[w]["version"])
        first = min(outcome, key=lambda w: outcome[w]["version"])
        # the write that replaced the other's rows says which partition and which commit
        assert outcome[last]["replaced"] == [(outcome[first]["version"], [day])]
        assert (
            f"'{day}' committed by ray_assets write '{first}-{round_index}'"
            in (outcome[last]["warnings"][0])
        )
        assert not outcome[first]["replaced"]
        if final_round(outcomes, round_index, scenario.get("same_day", False)):
            assert writers_in(scenario["uri"], day) == [last] * ROWS_BY_WRITER[last]
            assert counts[day] == ROWS_BY_WRITER[last]


@pytest.mark.parametrize("name", ["fail", "fail-existing"])
def test_racing_fail_writers_leave_the_winners_rows_and_the_loser_fails(races, name) -> None:
    scenario = races["scenarios"][name]
    counts = delta_log_rows(scenario["uri"])
    outcomes = races["outcomes"][name]
    for round_index, outcome in outcomes.items():
        day = day_of(0 if scenario.get("same_day") else round_index)
        statuses = sorted(o["status"] for o in outcome.values())
        assert statuses == ["ConcurrentWriteError", "ok"], outcome
        winner = next(w for w, o in outcome.items() if o["status"] == "ok")
        loser = next(w for w in outcome if w != winner)
        message = outcome[loser]["message"]
        assert f"asset 'orders', partition '{day}'" in message
        assert f"committed by ray_assets write '{winner}-{round_index}'" in message
        assert "Nothing was committed" in message
        if final_round(outcomes, round_index, scenario.get("same_day", False)):
            assert writers_in(scenario["uri"], day) == [winner] * ROWS_BY_WRITER[winner]
            assert counts[day] == ROWS_BY_WRITER[winner]


def test_racing_creators_with_different_types_never_mix_the_table(races) -> None:
    scenario = races["scenarios"]["types"]
    for round_index, outcome in races["outcomes"]["types"].items():
        uri = scenario["uri"].format(round=round_index)
        statuses = sorted(o["status"] for o in outcome.values())
        assert statuses == ["SchemaMismatchError", "ok"], outcome
        winner = next(w for w, o in outcome.items() if o["status"] == "ok")
        loser = next(w for w in outcome if w != winner)
        assert "amount: table has" in outcome[loser]["message"]
        assert "Nothing was committed" in outcome[loser]["message"]
        table_type = pa.schema(DeltaStore(uri).open_table().schema().to_arrow()).field("amount")
        assert table_type.type == pa.from_numpy_dtype(scenario["amount_type"][winner])
        files = DeltaStore(uri).data_files(PartitionSlice.unpartitioned("orders"))
        assert files
        for data_file in files:
            assert pq.read_schema(Path(data_file.path)).field("amount").type == table_type.type
        assert writers_in(uri, day_of(round_index)) == [winner] * ROWS_BY_WRITER[winner]
