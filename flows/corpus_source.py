"""A user corpus and question set given to a pipeline run: checked when the parameters are read,
stored and indexed when the run builds its tasks.

``corpus`` is a path (a file, a directory of files or a glob, read with the default field names
id, title and text) or the id of a corpus artifact already in the store (what ``trailforge corpus``
made, with any field names). Both are checked before any work: a path must name files that parse
as a corpus, an id must name a stored corpus. A question set must parse too; resolving its
supporting pages needs the corpus, so that happens when the run stores it.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

from storage import ArtifactRef, ArtifactStore, Catalog
from storage.ids import check_artifact_id
from tasks.corpus.questions import QuestionsConfig, QuestionsError, QuestionsSource, pin_questions
from tasks.corpus.user import CorpusConfig, CorpusError, content_digest, load_corpus, pin
from tasks.stage import execute_stage


def corpus_config(value: str) -> CorpusConfig | None:
    """The config for a corpus path, or None when ``value`` names no files (an artifact id, then)."""
    config = CorpusConfig(path=value)
    try:
        content_digest(config)
    except CorpusError:
        if Path(value).expanduser().exists():
            raise  # files there, but not a corpus: say why
        return None
    return config


def check_corpus(value: str, home: str | None) -> None:
    """Raise ValueError unless ``value`` is a corpus that parses or a stored corpus artifact's id."""
    config = corpus_config(value)
    if config is not None:
        _parses(value, content_digest(config))
        return
    try:
        check_artifact_id(value)
    except ValueError:
        raise ValueError(f"corpus {value!r}: no corpus files there (.jsonl, .parquet or .csv)") from None
    if not ArtifactStore(home).exists("corpus", value):
        raise ValueError(f"corpus {value!r}: no such files, and no corpus artifact with that id in the store")


@lru_cache(maxsize=16)
def _parses(path: str, digest: str) -> None:
    """Load once per content: the same parameters are read again when a flow run starts."""
    load_corpus(CorpusConfig(path=path))


def check_questions(path: str) -> None:
    """Raise ValueError (QuestionsError) unless the question set's records parse."""
    from tasks.corpus.questions import QuestionsConfig, read_questions

    try:
        read_questions(QuestionsConfig(path=path))
    except ValueError as error:
        raise ValueError(f"eval_questions {path!r}: {error}") from None


def corpus_artifact(run, value: str) -> ArtifactRef:
    """The corpus artifact for a path (validated, stored, its mention graph mined) or a stored id.

    ``run`` is a flow's stage runner, so a corpus built here is recorded in lineage like any stage.
    """
    config = corpus_config(value)
    if config is None:
        return run.store.ref("corpus", check_artifact_id(value))
    return run("corpus", pin(config), {})


def rebuild_dependent_tasks(
    run, catalog: Catalog, previous: str, corpus: ArtifactRef, index: ArtifactRef
) -> list[ArtifactRef]:
    """Task sets built on the corpus version ``previous``, built again on its successor.

    A refreshed corpus would otherwise leave the tasks of the pipeline that used it asking about
    the old text. Each set is built with the config it recorded (tasks read from the pages with the
    new ``index``; a question set re-read from its file and resolved against the new pages), and
    the new set supersedes the old one in the catalog's history.
    """
    from tasks.synthesis.corpus_stage import CorpusSynthesisConfig

    rebuilt = []
    for edge in catalog.edges_of(previous):
        if edge["parent"] != previous or edge["role"] != "corpus":
            continue
        (row,) = catalog.query("SELECT stage, config_json FROM artifacts WHERE id = ?", [edge["child"]])
        if row["stage"] == "synthesize-corpus":
            config = CorpusSynthesisConfig.model_validate_json(row["config_json"])
            tasks = run("synthesize-corpus", config, {"corpus": corpus, "index": index})
        elif row["stage"] == "questions":
            source = QuestionsSource.model_validate_json(row["config_json"])
            tasks = ingest_questions(
                run, QuestionsConfig(**source.model_dump(exclude={"content_digest"})), corpus
            )
        else:
            continue
        if tasks.id != edge["child"]:
            catalog.record_version(edge["child"], tasks.id)
        rebuilt.append(tasks)
    return rebuilt


StageRun = Callable[..., ArtifactRef]  # a flow's StageRunner: run(stage, config, inputs)


def ingest_questions(
    run: StageRun | ArtifactStore, questions: QuestionsConfig | str | Path, corpus: ArtifactRef
) -> ArtifactRef:
    """Check, resolve against ``corpus`` (a corpus or world artifact) and store a question set.

    ``run`` is a flow's stage runner (the artifact and its edge to the corpus go into lineage) or
    a bare store (tests, scripts). Raises QuestionsError naming every problem; nothing is stored then.
    """
    config = questions if isinstance(questions, QuestionsConfig) else QuestionsConfig(path=str(questions))
    try:
        source = pin_questions(config)
    except CorpusError as error:  # no files at the path
        raise QuestionsError(str(error)) from None
    if isinstance(run, ArtifactStore):
        return execute_stage("questions", run, source, {"corpus": corpus})
    return run("questions", source, {"corpus": corpus})
