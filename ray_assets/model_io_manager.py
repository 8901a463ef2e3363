"""`ModelArtifactIOManager`: where a model asset's `ModelArtifact` (the model file's URI and
version, not the model) is kept between runs, beside the tables in any storage pyarrow reaches
(a folder, `s3://`), as a small JSON document per asset."""

from __future__ import annotations

import json
import os
from typing import Any

import dagster as dg
from pydantic import Field

from ray_assets.models import ModelArtifact
from ray_assets.storage.documents import put_document, read_document


class ModelArtifactIOManager(dg.ConfigurableIOManager):
    """Stores `ModelArtifact` outputs as `<root_uri>/<folder>/<asset key path>.json`."""

    root_uri: str = Field(description="A folder or `s3://bucket/prefix`: the tables' root.")
    folder: str = Field(default="models", description="The documents' folder under the root.")

    def folder_uri(self) -> str:
        """Where model files belong: the folder of the artifact documents (`save_model`'s
        `directory`)."""
        root = self.root_uri if "://" in self.root_uri else os.path.abspath(self.root_uri)
        return f"{root.rstrip('/')}/{self.folder}"

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        if not isinstance(obj, ModelArtifact):
            raise TypeError(
                f"Asset '{context.asset_key.to_user_string()}' stores through "
                f"ModelArtifactIOManager, which keeps ModelArtifacts (save_model's result), not "
                f"{type(obj).__name__}"
            )
        filesystem, path = self._location(context.asset_key)
        put_document(filesystem, path, json.dumps(obj.__dict__))
        context.add_output_metadata({**obj.metadata(), "artifact_document": path})

    def load_input(self, context: dg.InputContext) -> ModelArtifact:
        filesystem, path = self._location(context.asset_key)
        record = read_document(filesystem, path)
        if record is None:
            raise FileNotFoundError(
                f"Asset '{context.asset_key.to_user_string()}': no model artifact document at "
                f"{path}; materialize it first."
            )
        return ModelArtifact(**record)

    def _location(self, key: dg.AssetKey) -> tuple[Any, str]:
        from pyarrow import fs

        root = self.root_uri if "://" in self.root_uri else os.path.abspath(self.root_uri)
        filesystem, base = fs.FileSystem.from_uri(root)
        return filesystem, f"{base.rstrip('/')}/{self.folder}/{'/'.join(key.path)}.json"
