"""Content-addressed artifact store rooted at ``TRAILFORGE_HOME``.

Every artifact is a directory ``<root>/artifacts/<kind>/<id>/``: tables as Parquet files, models and
indexes as whatever files they need, plus ``_meta.json``. A writer fills a private temporary directory
and renames it into place in one step, so a killed run never leaves a half artifact where a reader
(or a resumed run) could see it, and two racing writers of the same id cannot both win.

A stage holds a shared lock on each artifact it reads for as long as it runs; replacing or removing
an artifact (a retry, ``--from-stage``) needs the exclusive lock, so it never pulls an artifact from
under a running stage: it waits a little, then refuses with :class:`ArtifactInUse`.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel

from storage.schemas import ArtifactKind, ArtifactRef

ModelT = TypeVar("ModelT", bound=BaseModel)

META_FILE = "_meta.json"
# How long a replace or removal waits for stages reading the artifact to finish before refusing.
LOCK_WAIT_S = 10.0


class ArtifactInUse(RuntimeError):
    """The artifact is being read by a running stage; replacing it now would change its input."""


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
        """The artifact's directory; a kind or id that could lead out of the store is refused.

        Every caller should already pass a known kind and a digest (user input is checked with
        :func:`storage.ids.check_artifact_id`); this is the last guard before a path is built.
        """
        from typing import get_args

        if kind not in get_args(ArtifactKind):
            raise ValueError(f"{kind!r} is not an artifact kind")
        if not artifact_id or not set(artifact_id) <= set("0123456789abcdef"):
            raise ValueError(f"{artifact_id!r} is not an artifact id: ids are lowercase hex digests")
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
    def writing(
        self,
        kind: ArtifactKind,
        artifact_id: str,
        stage: str,
        config_json: str,
        recipe: dict | None = None,
        *,
        replace: bool = False,
    ) -> Iterator[Path]:
        """Yield a private directory; on success it becomes the artifact atomically.

        The caller writes its files there and may set ``rows`` by writing tables with
        :meth:`write_table`. On any exception the directory is removed and nothing is published.
        ``recipe`` (code version, environment) is recorded beside the config. With ``replace`` an
        existing artifact of this id is swapped for the new one once no stage reads it.
        """
        self.tmp.mkdir(parents=True, exist_ok=True)
        # host and pid in the name let a sweep tell a killed writer's leftovers from live work
        work = self.tmp / f"{artifact_id}.{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
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
                **(recipe or {}),
                # Which process built it: on a cluster, the worker to look at when it looks wrong.
                "built_by": {"host": socket.gethostname(), "pid": os.getpid()},
                "started_at": started_at,
                "built_at": datetime.now(UTC).isoformat(),
            }
            (work / META_FILE).write_text(json.dumps(meta, indent=1))
            final = self.path(kind, artifact_id)
            final.parent.mkdir(parents=True, exist_ok=True)
            if replace and final.exists():
                with self._exclusive(kind, artifact_id):
                    self._discard(final)
                    os.rename(work, final)
                return
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

    # --- locks: readers share, replacement and removal exclude ---------------------------------------

    def _lock_file(self, kind: str, artifact_id: str) -> Path:
        path = self.root / "locks" / kind / f"{artifact_id}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    @contextmanager
    def reading(self, refs: Iterable[ArtifactRef]) -> Iterator[None]:
        """Hold a shared lock on each artifact while a stage reads it (waits out a replacement)."""
        with ExitStack() as stack:
            for ref in sorted(refs, key=lambda r: r.id):
                handle = stack.enter_context(open(self._lock_file(ref.kind, ref.id), "a"))
                fcntl.flock(handle, fcntl.LOCK_SH)
            yield

    @contextmanager
    def _exclusive(self, kind: str, artifact_id: str) -> Iterator[None]:
        with open(self._lock_file(kind, artifact_id), "a") as handle:
            deadline = time.monotonic() + LOCK_WAIT_S
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise ArtifactInUse(
                            f"{kind} {artifact_id} is being read by a running stage; it was left in "
                            "place. Try again when that run has finished."
                        ) from None
                    time.sleep(0.05)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _discard(self, path: Path) -> None:
        """Unpublish in one rename, then delete (a reader's open files stay valid until closed)."""
        doomed = self.tmp / f"removed-{path.name}.{uuid.uuid4().hex[:8]}"
        os.rename(path, doomed)
        shutil.rmtree(doomed, ignore_errors=True)

    def remove(self, kind: str, artifact_id: str) -> bool:
        """Unpublish an artifact, unless a running stage is reading it (:class:`ArtifactInUse`)."""
        path = self.path(kind, artifact_id)
        if not path.exists():
            return False
        self.tmp.mkdir(parents=True, exist_ok=True)
        with self._exclusive(kind, artifact_id):
            self._discard(path)
        return True

    def sweep_tmp(self) -> int:
        """Delete temporary directories left by killed writers; they were never visible.

        A directory whose writer is alive on this host is live work and stays; one from another
        host stays for a day, since its writer cannot be asked.
        """
        if not self.tmp.exists():
            return 0
        swept = 0
        for path in list(self.tmp.iterdir()):
            if _writer_alive(path):
                continue
            shutil.rmtree(path, ignore_errors=True)
            swept += 1
        return swept


def _writer_alive(path: Path) -> bool:
    parts = path.name.split(".")
    if path.name.startswith("removed-") or len(parts) < 4 or not parts[-2].isdigit():
        return False
    host, pid = ".".join(parts[1:-2]), int(parts[-2])
    if host != socket.gethostname():
        return time.time() - path.stat().st_mtime < 86_400
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
