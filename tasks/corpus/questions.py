"""User question sets: a user's own questions about their corpus, as held-out tasks.

A question set is JSONL, Parquet, CSV or a Hugging Face dataset, read by the corpus readers
(:mod:`tasks.corpus.user`), with ``id``, ``question``, ``answer`` and, optionally, ``aliases``
(other accepted answers) and ``supporting`` (ids or titles of the corpus pages that answer it). In
CSV, a list is a JSON array (``["a", "b"]``) or ``|``-separated text. Every record is checked first
and every problem reported with its file and line (or row) and field; supporting pages are resolved
against the corpus (a title becomes its page's id), and a page the corpus does not hold is a
located error too. A set with any error is not stored.

The ``questions`` stage stores a set as a ``tasks`` artifact of held-out tasks (split ``eval``,
bucket ``user``, no hops, the supporting ids in ``supporting``), so the evaluate stage takes it
as it takes synthesised tasks. Its id covers the files' bytes and the corpus's id.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from storage import ArtifactStore
from storage.schemas import Task
from storage.store import read_table, write_table
from tasks.corpus.user import CorpusError, TableSource, content_digest, located_errors, read_records
from tasks.stage_spec import Inputs, Stage

USER_BUCKET = "user"


class QuestionsError(ValueError):
    """A question set that cannot be used; the message lists every located problem."""


class QuestionsConfig(TableSource):
    """Where a question set is read from (a file, a directory of files, a glob or a dataset)."""


class QuestionsSource(QuestionsConfig):
    """A question set pinned to the bytes it read: the digest is part of the artifact id."""

    content_digest: str = Field(min_length=16, pattern=r"^[0-9a-f]+$")


def pin_questions(config: QuestionsConfig) -> QuestionsSource:
    return QuestionsSource(**config.model_dump(), content_digest=content_digest(config))


class UserQuestion(BaseModel):
    """One record of a question set; extra fields are ignored, as in corpora."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True, coerce_numbers_to_str=True)

    id: str = Field(min_length=1)
    question: str = Field(min_length=1)
    answer: str = Field(min_length=1)
    aliases: list[str] = Field(default_factory=list)
    supporting: list[str] = Field(
        default_factory=list, description="Ids or titles of the corpus pages that answer the question."
    )

    @field_validator("aliases", "supporting", mode="before")
    @classmethod
    def _text_list(cls, value: object) -> object:
        """A table cell holds a list as a JSON array or as ``|``-separated text; empty is none."""
        if value is None:
            return []
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part for part in text.split("|") if part.strip()]
        return value

    @field_validator("aliases", "supporting")
    @classmethod
    def _no_blanks(cls, values: list[str]) -> list[str]:
        return [v for v in values if v]


def _problem(location: str, error: dict) -> str:
    field = str(error["loc"][0]) if error["loc"] else "(record)"
    if error["type"] == "missing":
        return f"{location}: missing field {field!r}"
    if error["type"] == "string_too_short":
        return f"{location}: field {field!r} is empty"
    return f"{location}: field {field!r}: {error['msg']}"


def read_questions(config: QuestionsConfig) -> list[tuple[str, UserQuestion]]:
    """Every (location, question) of a set, or a QuestionsError listing every located problem.

    Needs no corpus, so a command can check a file before it builds or loads anything.
    """
    questions: list[tuple[str, UserQuestion]] = []
    seen: dict[str, str] = {}
    errors: list[str] = []
    try:
        for location, record in read_records(config):
            if isinstance(record, CorpusError):
                errors.append(f"{location}: {record}")
                continue
            if not isinstance(record, dict):
                errors.append(f"{location}: expected an object with fields, got {type(record).__name__}")
                continue
            try:
                question = UserQuestion.model_validate(record)
            except ValidationError as error:
                errors.extend(_problem(location, e) for e in error.errors())
                continue
            if question.id in seen:
                errors.append(f"{location}: duplicate id {question.id!r} (first at {seen[question.id]})")
                continue
            seen[question.id] = location
            questions.append((location, question))
    except CorpusError as error:  # no files at the path, an unknown format
        raise QuestionsError(str(error)) from None
    if errors:
        raise QuestionsError(located_errors(f"question set {config.path!r}", errors))
    if not questions:
        raise QuestionsError(f"question set {config.path!r} holds no questions")
    return questions


def page_resolver(ids: list[str], titles: list[str]) -> Callable[[str], str]:
    """Maps a page's id or title to its id; a title held by several pages, or none, is a ValueError.

    Titles match exactly first, then ignoring case and spacing ("marrow  bay" finds "Marrow Bay").
    """
    known = set(ids)
    exact: dict[str, list[str]] = defaultdict(list)
    folded: dict[str, list[str]] = defaultdict(list)
    for doc_id, title in zip(ids, titles, strict=True):
        exact[title].append(doc_id)
        folded[" ".join(title.casefold().split())].append(doc_id)

    def resolve(name: str) -> str:
        if name in known:
            return name
        for table, key in ((exact, name), (folded, " ".join(name.casefold().split()))):
            matches = table.get(key, [])
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1:
                raise ValueError(
                    f"title {name!r} names {len(matches)} pages ({', '.join(matches[:5])}); give an id"
                )
        raise ValueError(f"{name!r} is neither the id nor the title of a page in the corpus")

    return resolve


def question_tasks(
    questions: list[tuple[str, UserQuestion]], ids: list[str], titles: list[str]
) -> list[Task]:
    """Held-out tasks with supporting pages as ids, or a QuestionsError locating every unknown page."""
    resolve = page_resolver(ids, titles)
    tasks, errors = [], []
    for location, question in questions:
        supporting = []
        for name in question.supporting:
            try:
                supporting.append(resolve(name))
            except ValueError as error:
                errors.append(f"{location}: field 'supporting': {error}")
        fields = question.model_dump(exclude={"supporting"})  # id, question, answer, aliases
        tasks.append(
            Task(
                **fields,
                hops=[],
                template="user",
                split="eval",
                bucket=USER_BUCKET,
                supporting=list(dict.fromkeys(supporting)),
            )
        )
    if errors:
        raise QuestionsError(located_errors("question set", errors))
    return tasks


def produce_questions(work: Path, config: QuestionsSource, inputs: Inputs, store: ArtifactStore) -> None:
    if content_digest(config) != config.content_digest:
        raise QuestionsError(f"question set {config.path!r} changed while it was being read; run again")
    pages = read_table(inputs["corpus"])
    tasks = question_tasks(
        read_questions(config), pages.column("id").to_pylist(), pages.column("title").to_pylist()
    )
    write_table(work, tasks)


STAGE = Stage(name="questions", kind="tasks", produce=produce_questions, config_model=QuestionsSource)
