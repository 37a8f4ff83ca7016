"""Content-addressed artifact store rooted at ``TRAILFORGE_HOME``.

Every artifact is a directory ``<root>/artifacts/<kind>/<id>/``: tables as Parquet files, models and
indexes as whatever files they need, plus ``_meta.json``. A writer fills a private temporary directory
and renames it into place in one step, so a killed run never leaves a half artifact where a reader
(or a resumed run) could see it, and two racing writers of the same id cannot both win.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel

from storage.schemas import ArtifactKind, ArtifactRef

ModelT = TypeVar("ModelT", bound=BaseModel)

META_FILE = "_meta.json"


def default_home() -> Path:
    return Path(os.environ.get("TRAILFORGE_HOME", ".trailforge")).expanduser().resolve()


class ArtifactStore:
    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root).expanduser().resolve() if root else default_home()
        self.artifacts = self.root / "artifacts"
        self.tmp = self.root / "tmp"

    @property
    def catalog_path(self) -> Path:
        return self.root / "lineage.duckdb"

    def path(self, kind: str, artifact_id: str) -> Path:
        return self.artifacts / kind / artifact_id

    def exists(self, kind: str, artifact_id: str) -> bool:
        return (self.path(kind, artifact_id) / META_FILE).is_file()

    def ref(self, kind: ArtifactKind, artifact_id: str, *, reused: bool = True) -> ArtifactRef:
        meta = json.loads((self.path(kind, artifact_id) / META_FILE).read_text())
        return ArtifactRef(
            id=artifact_id,
            kind=kind,
            stage=meta["stage"],
            uri=str(self.path(kind, artifact_id)),
            rows=meta["rows"],
            reused=reused,
        )

    def meta(self, ref: ArtifactRef) -> dict:
        return json.loads((Path(ref.uri) / META_FILE).read_text())

    @contextmanager
    def writing(self, kind: ArtifactKind, artifact_id: str, stage: str, config_json: str) -> Iterator[Path]:
        """Yield a private directory; on success it becomes the artifact atomically.

        The caller writes its files there and may set ``rows`` by writing tables with
        :meth:`write_table`. On any exception the directory is removed and nothing is published.
        """
        self.tmp.mkdir(parents=True, exist_ok=True)
        work = self.tmp / f"{artifact_id}.{uuid.uuid4().hex[:8]}"
        work.mkdir()
        started_at = datetime.now(UTC).isoformat()
        try:
            yield work
            rows = _count_rows(work)
            meta = {
                "id": artifact_id,
                "kind": kind,
                "stage": stage,
                "rows": rows,
                "config": json.loads(config_json),
                # Which process built it: on a cluster, the worker to look at when it looks wrong.
                "built_by": {"host": socket.gethostname(), "pid": os.getpid()},
                "started_at": started_at,
                "built_at": datetime.now(UTC).isoformat(),
            }
            (work / META_FILE).write_text(json.dumps(meta, indent=1))
            final = self.path(kind, artifact_id)
            final.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.rename(work, final)
            except OSError:
                if not self.exists(kind, artifact_id):
                    raise
                # Another writer published the same id first; its content is the same by construction.
                shutil.rmtree(work, ignore_errors=True)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise

    def remove(self, kind: str, artifact_id: str) -> bool:
        """Unpublish an artifact: renamed out of sight in one step, then deleted."""
        path = self.path(kind, artifact_id)
        if not path.exists():
            return False
        self.tmp.mkdir(parents=True, exist_ok=True)
        doomed = self.tmp / f"removed-{artifact_id}.{uuid.uuid4().hex[:8]}"
        os.rename(path, doomed)
        shutil.rmtree(doomed, ignore_errors=True)
        return True

    def sweep_tmp(self) -> int:
        """Delete temporary directories left by killed writers; they were never visible."""
        if not self.tmp.exists():
            return 0
        stale = list(self.tmp.iterdir())
        for path in stale:
            shutil.rmtree(path, ignore_errors=True)
        return len(stale)


def _count_rows(directory: Path) -> int:
    main = directory / "data.parquet"
    return pq.read_metadata(main).num_rows if main.exists() else 0


def write_table(
    directory: Path, rows: Sequence[BaseModel] | pa.Table, name: str = "data", schema=None
) -> Path:
    """Write rows (pydantic models or an Arrow table) as ``<name>.parquet`` in an artifact directory."""
    table = rows if isinstance(rows, pa.Table) else _to_arrow(rows, schema)
    path = directory / f"{name}.parquet"
    pq.write_table(table, path)
    return path


def _to_arrow(rows: Sequence[BaseModel], schema=None) -> pa.Table:
    if not rows and schema is None:
        return pa.table({})
    return pa.Table.from_pylist([r.model_dump(mode="json") for r in rows], schema=schema)


def read_table(ref: ArtifactRef | Path | str, name: str = "data") -> pa.Table:
    directory = Path(ref.uri) if isinstance(ref, ArtifactRef) else Path(ref)
    path = directory / f"{name}.parquet"
    if not path.exists():
        return pa.table({})
    return pq.read_table(path)


def read_rows(ref: ArtifactRef | Path | str, model: type[ModelT], name: str = "data") -> list[ModelT]:
    return [model.model_validate(row) for row in read_table(ref, name).to_pylist()]
