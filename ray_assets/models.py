"""Model artifacts: a trained model as the output of an asset, loaded once per pool actor.

The training asset saves the model's bytes with `save_model` and returns the `ModelArtifact`
(where the file is, and its version: a hash of its content). The scoring asset takes that
artifact as an input, so Dagster's lineage shows which model version scored which partition,
and `record_model` writes the version into each partition's metadata. The file's name is its
version, so a retrained model never overwrites the one an older partition was scored with.

Dagster-free: pool actors unpickle `ModelArtifact`, call `read_bytes` and `device` in Ray
workers.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ModelArtifact:
    """A model file in storage (a local path or an `s3://` URI) and its content version."""

    uri: str
    version: str
    name: str

    def read_bytes(self) -> bytes:
        """The model file's bytes, from wherever `uri` points (pyarrow's filesystems)."""
        from pyarrow import fs

        filesystem, path = fs.FileSystem.from_uri(_as_uri(self.uri))
        with filesystem.open_input_stream(path) as stream:
            return stream.read()

    def metadata(self) -> dict[str, str]:
        """What a scored partition records about the model that scored it."""
        return {"model/name": self.name, "model/version": self.version, "model/uri": self.uri}


def save_model(data: bytes, directory: str | Path, name: str, suffix: str = "") -> ModelArtifact:
    """Write `data` to `<directory>/<name>/<version><suffix>` (version: the first 16 hex digits
    of its SHA-256) unless that file is already there; atomic (a temporary file renamed)."""
    from pyarrow import fs

    version = hashlib.sha256(data).hexdigest()[:16]
    filesystem, base = fs.FileSystem.from_uri(_as_uri(str(directory)))
    folder = f"{base.rstrip('/')}/{name}"
    target = f"{folder}/{version}{suffix}"
    if filesystem.get_file_info(target).type == fs.FileType.NotFound:
        filesystem.create_dir(folder, recursive=True)
        partial = f"{folder}/.{version}.{uuid.uuid4().hex}.partial"
        with filesystem.open_output_stream(partial) as stream:
            stream.write(data)
        filesystem.move(partial, target)
    uri = (
        target
        if _is_local(str(directory))
        else f"{str(directory).rstrip('/')}/{name}/{version}{suffix}"
    )
    return ModelArtifact(uri=uri, version=version, name=name)


def record_model(context: Any, artifact: ModelArtifact) -> None:
    """Record `artifact` in the metadata of each partition the run materializes (of the
    materialization, for an unpartitioned asset)."""
    if context.has_partition_key or context.has_partition_key_range:
        for key in context.partition_keys:
            context.add_asset_metadata(artifact.metadata(), partition_key=key)
    else:
        context.add_output_metadata(artifact.metadata())


def _is_local(location: str) -> bool:
    return "://" not in location or location.startswith("file://")


def _as_uri(location: str) -> str:
    return location if "://" in location else os.path.abspath(location)


def device() -> str:
    """Where a model in a pool actor should run: `"cuda"` when Ray gave the actor a GPU and
    PyTorch sees one, else `"cpu"` (a CPU pool, a CPU fallback, or logical GPUs in tests)."""
    import ray

    if not ray.get_runtime_context().get_accelerator_ids().get("GPU"):
        return "cpu"
    try:
        import torch
    except ImportError:
        return "cpu"
    return "cuda" if torch.cuda.is_available() else "cpu"
