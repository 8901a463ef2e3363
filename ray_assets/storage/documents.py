"""Small JSON documents that are replaced in place (Parquet manifests, model artifact
documents): each put replaces the whole document, and each read returns one whole version.

A put of one object is atomic on every object store; on a local disk a file is written in
place, so the document is written beside it and renamed over it. Reading is the subtle half:
pyarrow reads an object-store file with a HEAD for its size and then ranged GETs, so a put
between the two hands back the new text cut at the old length (two writers racing on one S3
table found it). A torn read is not one complete JSON document, so it is read again; the
torn text is never returned. The parse that tells whole from torn is the one callers use.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pyarrow.fs as pafs

from ray_assets.errors import RayAssetsError

WHOLE_READ_ATTEMPTS = 6
_BACKOFF_S = 0.02


def put_document(filesystem: pafs.FileSystem, path: str, text: str) -> None:
    """Replace the document at `path` at once: readers see the old text or the new one."""
    directory = path.rsplit("/", 1)[0]
    if isinstance(filesystem, pafs.LocalFileSystem):
        filesystem.create_dir(directory, recursive=True)
        temporary = f"{directory}/.{uuid.uuid4().hex}.tmp"
        with filesystem.open_output_stream(temporary) as stream:
            stream.write(text.encode())
        filesystem.move(temporary, path)
        return
    with filesystem.open_output_stream(path) as stream:  # one PUT of the whole object
        stream.write(text.encode())


def read_document(filesystem: pafs.FileSystem, path: str) -> Any:
    """The document's JSON value, from one whole version of it; None when there is none."""
    error: Exception | None = None
    for attempt in range(WHOLE_READ_ATTEMPTS):
        if attempt:
            time.sleep(_BACKOFF_S * 2 ** (attempt - 1))
        try:
            with filesystem.open_input_stream(path) as stream:
                return json.loads(stream.read().decode())
        except FileNotFoundError:
            return None
        except (ValueError, OSError) as failure:  # torn (JSON, UTF-8) or cut short (OSError)
            error = failure
    raise RayAssetsError(
        f"The document {path} could not be read whole in {WHOLE_READ_ATTEMPTS} attempts: {error}"
    ) from error
