"""The return-risk model: trained on the enriched orders, scored in an actor pool.

`return_risk_model` trains a small PyTorch MLP (one hidden layer) on a sample of
`orders_enriched` to predict whether an order is returned, and stores it as a content-versioned
file (`ModelArtifact`). `orders_scored` scores each day's orders with it in an `ActorPool`:
every actor loads the model once, on its GPU when Ray gave it one and PyTorch sees CUDA, else
on CPU. Each scored partition records the model version in its metadata and in a column, and
Dagster's lineage shows which model run fed which scoring run. GPU scoring steps run in the
`ray_gpu` concurrency pool, sized to the machine's GPUs (`ray_assets.size_gpu_pool`).
"""

import io
import warnings

import dagster as dg
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import ray.data

from definitions.assets import FOLLOWS_UPSTREAM, daily_asset
from definitions.generator import CHANNELS, REGIONS, SEGMENTS
from ray_assets import ActorPool, ModelArtifact, gpu_pool, record_model, save_model
from ray_assets.models import device

FEATURE_COLUMNS = ["quantity", "unit_price", "channel", "region", "segment"]
CATEGORIES = {"channel": CHANNELS, "region": REGIONS, "segment": SEGMENTS}
TRAINING_ROWS = 50_000
MODEL_IO_MANAGER_KEY = "model_io_manager"


def features(batch: pa.Table) -> np.ndarray:
    """The model's inputs: log quantity and price, one-hot channel, region and segment."""
    columns = [
        np.log1p(batch["quantity"].to_numpy(zero_copy_only=False).astype(np.float32)),
        np.log1p(batch["unit_price"].to_numpy(zero_copy_only=False).astype(np.float32)),
    ]
    for name, values in CATEGORIES.items():
        column = batch[name]
        columns += [pc.equal(column, value).to_numpy(zero_copy_only=False) for value in values]
    return np.stack(columns, axis=1).astype(np.float32)


def build_network(inputs: int):  # -> torch.nn.Module
    import torch

    return torch.nn.Sequential(torch.nn.Linear(inputs, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))


with warnings.catch_warnings():  # backfill_policy on dg.asset is beta in Dagster 1.13
    warnings.simplefilter("ignore", dg.BetaWarning)

    @dg.asset(
        description="A PyTorch MLP that predicts whether an order is returned, trained on a sample "
        "of the enriched orders; stored as a file named by its content's hash.",
        group_name="models",
        io_manager_key=MODEL_IO_MANAGER_KEY,
        kinds={"pytorch"},
        backfill_policy=dg.BackfillPolicy.single_run(),  # joins a range run with the daily assets
        required_resource_keys={"ray", MODEL_IO_MANAGER_KEY},
    )
    def return_risk_model(
        context: dg.AssetExecutionContext, orders_enriched: ray.data.Dataset
    ) -> ModelArtifact:
        import torch

        context.resources.ray.ensure_started(context.log)
        sample = orders_enriched.select_columns([*FEATURE_COLUMNS, "is_return"]).limit(
            TRAINING_ROWS
        )
        refs = sample.to_arrow_refs()
        rows = pa.concat_tables(ray.get(refs)) if refs else None
        if rows is None or rows.num_rows == 0:
            raise dg.Failure("return_risk_model: orders_enriched has no rows to train on yet")
        inputs = torch.from_numpy(features(rows))
        labels = torch.from_numpy(
            rows["is_return"].to_numpy(zero_copy_only=False).astype(np.float32)
        )
        torch.manual_seed(0)
        network = build_network(inputs.shape[1])
        optimizer = torch.optim.Adam(network.parameters(), lr=0.01)
        loss_fn = torch.nn.BCEWithLogitsLoss()
        for _ in range(200):
            optimizer.zero_grad()
            loss = loss_fn(network(inputs).squeeze(1), labels)
            loss.backward()
            optimizer.step()
        buffer = io.BytesIO()
        torch.save({"inputs": inputs.shape[1], "state": network.state_dict()}, buffer)
        models = context.resources.model_io_manager.folder_uri()  # beside the artifact docs
        artifact = save_model(buffer.getvalue(), models, "return_risk", ".pt")
        context.add_output_metadata(
            {**artifact.metadata(), "training_rows": rows.num_rows, "loss": loss.item()}
        )
        return artifact


class ReturnRiskScorer:
    """Loads the model once per actor; scores batch after batch."""

    def __init__(self, model: ModelArtifact) -> None:
        import torch

        self.torch = torch
        self.device = device()
        torch.set_num_threads(1)
        saved = torch.load(io.BytesIO(model.read_bytes()), map_location=self.device)
        self.network = build_network(saved["inputs"]).to(self.device)
        self.network.load_state_dict(saved["state"])
        self.network.eval()
        self.version = model.version

    def __call__(self, batch: pa.Table) -> pa.Table:
        with self.torch.no_grad():
            inputs = self.torch.from_numpy(features(batch)).to(self.device)
            risk = self.torch.sigmoid(self.network(inputs).squeeze(1)).cpu().numpy()
        return pa.table(
            {
                "order_id": batch["order_id"],
                "order_date": batch["order_date"],
                "return_risk": pa.array(risk, pa.float32()),
                "model_version": pa.array([self.version] * batch.num_rows),
            }
        )


@daily_asset(
    description="Each order's predicted return risk, scored by `return_risk_model` in an actor "
    "pool (GPU when the cluster has one); the model version is in each row and each "
    "partition's metadata.",
    automation_condition=FOLLOWS_UPSTREAM,
    group_name="models",
    pool=gpu_pool(),
)
def orders_scored(
    context: dg.AssetExecutionContext,
    orders_enriched: ray.data.Dataset,
    return_risk_model: ModelArtifact,
    scoring: ActorPool,
) -> ray.data.Dataset:
    record_model(context, return_risk_model)
    orders = orders_enriched.select_columns(["order_id", "order_date", *FEATURE_COLUMNS])
    return scoring.map(orders, ReturnRiskScorer, {"model": return_risk_model}, log=context.log)


MODEL_ASSETS = [return_risk_model, orders_scored]
"""Trained on, and scoring, the daily assets' output: they run after them in a range run."""
