"""Where a flow's stages run: Prefect's thread pool or a Dask cluster, and which quota guards them.

The choice is a flow parameter rather than a decorator argument so that one deployment can run on a
laptop or on a cluster from the same UI form. Only where stages *run* changes: artifact ids, the
store and the lineage catalog do not depend on it, so a Dask run reuses a thread-pool run's
artifacts and the other way round.
"""

from __future__ import annotations

from typing import Literal

from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner
from pydantic import BaseModel, ConfigDict, Field


class OrchestrationConfig(BaseModel):
    """How stages are scheduled; none of it enters an artifact id."""

    model_config = ConfigDict(extra="forbid")

    task_runner: Literal["threads", "dask"] = Field(
        "threads",
        description="threads: Prefect's thread pool in the flow process. dask: a Dask cluster "
        "(dask_address, or a local cluster of dask_workers processes).",
    )
    max_workers: int = Field(
        1,
        ge=1,
        le=1024,
        description="Stages at once on the thread pool. Collection shards of a round run in "
        "parallel up to this; raise it for openai: backends or several GPUs (on CPU one model "
        "already uses every core).",
    )
    dask_address: str | None = Field(
        None,
        description="Scheduler address of an existing Dask cluster, e.g. tcp://10.0.0.5:8786. Its "
        "workers must see the store root at the same path (shared storage).",
    )
    dask_workers: int = Field(2, ge=1, le=1024, description="Workers of the local Dask cluster.")
    concurrency_limit: str | None = Field(
        None,
        description="Name of a Prefect global concurrency limit that every stage running a model "
        "(collection, evaluation, training) holds one slot of while it computes: a guard for a "
        "model server or an API quota. Create it first: prefect gcl create NAME --limit N.",
    )


def make_task_runner(config: OrchestrationConfig) -> TaskRunner:
    """A fresh, unstarted task runner; use it as a context manager inside the flow."""
    if config.task_runner == "threads":
        return ThreadPoolTaskRunner(max_workers=config.max_workers)
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError as error:  # pragma: no cover - the dask extra is in the dev install
        raise RuntimeError("task_runner 'dask' needs prefect-dask: pip install 'trailforge[dask]'") from error
    if config.dask_address:
        return DaskTaskRunner(address=config.dask_address)
    return DaskTaskRunner(
        cluster_kwargs={"n_workers": config.dask_workers, "threads_per_worker": 1, "processes": True}
    )


def check_concurrency_limit(name: str | None) -> None:
    """Fail before any work starts when the named global concurrency limit does not exist."""
    if name is None:
        return
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            raise ValueError(
                f"orchestration.concurrency_limit: no global concurrency limit named {name!r}; "
                f"create it with: prefect gcl create {name} --limit N"
            ) from None
