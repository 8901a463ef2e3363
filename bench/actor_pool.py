"""Actor pool benchmark: rows scored per second by an `ActorPool` (the model loaded once per
actor) against a per-batch function that loads the model for every batch.

  actor_pool_vs_reload   `ActorPool.map(dataset, Ranker, {"model": artifact})` against
                         `dataset.map_batches(score_reloading, fn_kwargs={"model": artifact})`,
                         the same model file, the same batches; goal >= 5x.

The model is an order ranker of the shape recommendation models have: a customer embedding
table (`--customers` x 64 float32: 244 MiB at the default 1,000,000, less than BERT-base's
440 MB) and a small MLP over the embedding and 14 order features, saved with `torch.save` as a
`ModelArtifact`. Loading it
(reading the file, unpickling the tensors, building the module) is what the pool does once
per actor and the baseline once per batch. One Ray (2 CPUs: the pool gets one actor of one
CPU and leaves one to the read stage, the baseline runs two tasks at a time) serves every
repeat; an untimed warm-up runs both once so that workers have imported PyTorch. Then
`--repeats` rounds run each form once, in alternating order; each run's scores are checked
against the other's (same rows, same sum). The value is the ratio of the medians (baseline
seconds / ours) with the min-max of the per-round ratios.

No GPU here: the GPU busy time during scoring (goal >= 90%) is measured only on a GPU machine.

Run: `.venv/bin/python bench/actor_pool.py [--rows N] [--customers N] [--repeats R]`
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _results import (  # noqa: E402
    VerificationError,
    exit_code_of,
    exit_now,
    median,
    reproduce_command,
    spread,
    write_result,
)

FEATURES = 14
BATCH_ROWS = 8_192


def build(customers: int):
    import torch

    class Ranker(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.customers = torch.nn.Embedding(customers, 64)
            self.head = torch.nn.Sequential(
                torch.nn.Linear(64 + FEATURES, 128), torch.nn.ReLU(), torch.nn.Linear(128, 1)
            )

        def forward(self, customer, features):
            joined = torch.cat([self.customers(customer), features], dim=1)
            return torch.sigmoid(self.head(joined)).squeeze(1)

    return Ranker()


def load(model) -> object:
    import torch

    torch.set_num_threads(1)
    saved = torch.load(io.BytesIO(model.read_bytes()))
    network = build(saved["customers"])
    network.load_state_dict(saved["state"])
    return network.eval()


def score(network, batch):
    import numpy as np
    import pyarrow as pa
    import torch

    with torch.no_grad():
        customer = torch.from_numpy(batch["customer_id"].to_numpy().copy())  # writable
        features = torch.from_numpy(
            np.stack([batch[f"f{i}"].to_numpy() for i in range(FEATURES)], axis=1)
        )
        scores = network(customer, features).numpy()
    return pa.table({"id": batch["id"], "score": scores})


class PooledRanker:
    """The pool's form: the model loaded in the constructor, once per actor."""

    def __init__(self, model) -> None:
        self.network = load(model)

    def __call__(self, batch):
        return score(self.network, batch)


def score_reloading(batch, model):
    """The baseline's form: the model loaded for every batch."""
    return score(load(model), batch)


def orders(rows: int, customers: int):
    import numpy as np
    import ray.data

    def generate(batch):
        ids = batch["id"]
        generator = np.random.default_rng(int(ids[0]))
        columns = {"id": ids, "customer_id": (ids * 7_919) % customers}
        for i in range(FEATURES):
            columns[f"f{i}"] = generator.random(len(ids), dtype=np.float32)
        return columns

    return ray.data.range(rows, override_num_blocks=max(2, rows // 100_000)).map_batches(generate)


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    import ray.data
    import torch

    from ray_assets import ActorPool, RayResource, save_model

    RayResource(num_cpus=2, object_store_memory_bytes=1024**3).ensure_started()
    ray.data.DataContext.get_current().enable_progress_bars = False
    torch.manual_seed(0)
    network = build(args.customers)
    buffer = io.BytesIO()
    torch.save({"customers": args.customers, "state": network.state_dict()}, buffer)
    folder = tempfile.mkdtemp(prefix="actor-pool-bench-")
    model = save_model(buffer.getvalue(), folder, "ranker", ".pt")
    pool = ActorPool(batch_size=BATCH_ROWS)
    data = orders(args.rows, args.customers).materialize()  # both forms read the same blocks

    def ours() -> tuple[int, float]:
        scored = pool.map(data, PooledRanker, {"model": model}).to_pandas()
        return len(scored), float(scored["score"].sum())

    def baseline() -> tuple[int, float]:
        scored = data.map_batches(
            score_reloading,
            fn_kwargs={"model": model},
            batch_size=BATCH_ROWS,
            batch_format="pyarrow",
        ).to_pandas()
        return len(scored), float(scored["score"].sum())

    forms = {"ours": ours, "baseline": baseline}
    for form in forms.values():  # warm-up: workers import PyTorch, the file is in the page cache
        form()
    seconds: dict[str, list[float]] = {"ours": [], "baseline": []}
    for round_ in range(args.repeats):
        order = ["ours", "baseline"] if round_ % 2 == 0 else ["baseline", "ours"]
        results = {}
        for name in order:
            began = time.perf_counter()
            results[name] = forms[name]()
            seconds[name].append(time.perf_counter() - began)
        (rows_ours, sum_ours), (rows_base, sum_base) = results["ours"], results["baseline"]
        if rows_ours != rows_base != args.rows or abs(sum_ours - sum_base) > 1e-3 * rows_ours:
            raise VerificationError(f"scores differ: {results}")
        print(
            f"round {round_ + 1}: pool {seconds['ours'][-1]:.2f} s, "
            f"reload {seconds['baseline'][-1]:.2f} s"
        )
    ours_s, base_s = seconds["ours"], seconds["baseline"]
    write_result(
        "actor_pool_vs_reload",
        median(base_s) / median(ours_s),
        unit="x",
        better="higher",
        goal=">= 5",
        baseline="map_batches(score_reloading): the model loaded from its file for every batch",
        command=reproduce_command("bench/actor_pool.py", args, parser),
        details={
            "rows": args.rows,
            "batch_rows": BATCH_ROWS,
            "customers": args.customers,
            "model_bytes": len(buffer.getvalue()),
            "seconds_ours": ours_s,
            "seconds_baseline": base_s,
            "rows_per_second_ours": args.rows / median(ours_s),
            "rows_per_second_baseline": args.rows / median(base_s),
            "pool": pool.plan().describe(),
            "gpu_busy": "not measured: no GPU on this machine",
        },
        spread=spread([b / o for b, o in zip(base_s, ours_s, strict=True)]),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="orders to score")
    parser.add_argument("--customers", type=int, default=1_000_000, help="embedding rows")
    parser.add_argument("--repeats", type=int, default=5, help="alternating repeats")
    args = parser.parse_args(argv)
    return exit_code_of(lambda: run(args, parser))


if __name__ == "__main__":
    exit_now(main())
