"""The README's commands and its tour are real: CI runs the same test command, the tour runs."""

import re
from pathlib import Path

import dagster as dg

from ray_assets import partition_range_tags
from tests.conftest import delta_log_rows, delta_version

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()


def bash_blocks() -> list[str]:
    return re.findall(r"```bash\n(.*?)```", README, flags=re.S)


def test_readme_opens_with_the_two_commands_and_ci_runs_the_test_command() -> None:
    demo, tests = (block.strip() for block in bash_blocks()[:2])
    assert demo.endswith("-m definitions.demo")
    assert tests.endswith("-m pytest")
    assert tests in (ROOT / ".ci" / "run").read_text().splitlines()


def test_tour_example_materializes_a_range(ray_session, tmp_path) -> None:
    (code,) = re.findall(r"```python\n(.*?)```", README, flags=re.S)[:1]
    namespace: dict[str, object] = {}
    exec(
        compile(code.replace('root_uri="data/"', f'root_uri="{tmp_path}"'), "README.md", "exec"),
        namespace,
    )
    defs = namespace["defs"]
    assert isinstance(defs, dg.Definitions)
    result = dg.materialize(
        [namespace["orders"], namespace["clean_orders"]],
        resources=defs.resources,
        tags=partition_range_tags("2024-01-01", "2024-01-03"),
    )
    assert result.success
    assert delta_version(tmp_path / "orders") == 0
    assert delta_log_rows(tmp_path / "orders") == {
        d: 1000 for d in ("2024-01-01", "2024-01-02", "2024-01-03")
    }
    days = ("2024-01-01", "2024-01-02", "2024-01-03")
    kept = {
        d: sum(1 for i in range(n * 1000, (n + 1) * 1000) if (i % 97) - 3.0 > 0)
        for n, d in enumerate(days)
    }
    assert delta_log_rows(tmp_path / "clean_orders") == kept
