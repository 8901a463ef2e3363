"""Which write a data file belongs to: a small record per write, kept until its commit.

A write's files are named `part-<write uuid>-…` and are invisible until the write commits. A
write killed before its commit leaves them behind, and only the write could still commit them.
So each write records, before its tasks write anything, `_ray_assets/writes/<write uuid>.json`:
its write id (a Dagster run id), its commit's transaction id and when it started. The record is
deleted once the write has committed or has been refused. A record that remains belongs to a
write that is running, or that died: table maintenance asks Dagster which, and reclaims the
files of a dead one at once, instead of after vacuum's retention window (7 days).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass

import pyarrow.fs as pafs

RECORDS_DIR = "_ray_assets/writes"


@dataclass(frozen=True)
class WriteRecord:
    """One write that may still commit its files."""

    write_uuid: str
    """The part of its data files' names that no other write shares."""
    write_id: str
    """The logical write (a Dagster run id)."""
    app_id: str
    """The transaction id its commit carries (found in the table once it committed)."""
    started_at: float


def record_write(filesystem: pafs.FileSystem, root: str, record: WriteRecord) -> None:
    directory = f"{root}/{RECORDS_DIR}"
    filesystem.create_dir(directory, recursive=True)
    with filesystem.open_output_stream(f"{directory}/{record.write_uuid}.json") as stream:
        stream.write(json.dumps(asdict(record)).encode())


def forget_write(filesystem: pafs.FileSystem, root: str, write_uuid: str) -> None:
    """Drop the record of a write that committed or was refused (a missing record is fine)."""
    try:
        filesystem.delete_file(f"{root}/{RECORDS_DIR}/{write_uuid}.json")
    except (FileNotFoundError, OSError):
        pass  # a stale record only delays maintenance's decision; it never loses data


def read_records(filesystem: pafs.FileSystem, root: str) -> list[WriteRecord]:
    selector = pafs.FileSelector(f"{root}/{RECORDS_DIR}", allow_not_found=True)
    records = []
    for info in filesystem.get_file_info(selector):
        if info.type != pafs.FileType.File or not info.path.endswith(".json"):
            continue
        try:
            with filesystem.open_input_stream(info.path) as stream:
                records.append(WriteRecord(**json.loads(stream.read())))
        except (FileNotFoundError, ValueError, TypeError):
            continue  # removed meanwhile, or not ours
    return records


def new_record(write_uuid: str, write_id: str, app_id: str) -> WriteRecord:
    return WriteRecord(write_uuid, write_id, app_id, time.time())
