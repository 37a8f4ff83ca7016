"""User corpora: JSONL, Parquet, CSV or a Hugging Face dataset, validated before anything is indexed.

Every record needs an id, a title and a text (the column names are configurable). All files are
checked first and every problem is reported with its file and line (or row) and field, so a bad
line costs one edit and one rerun, and a corpus with errors never reaches the index half-loaded.
Files come as users have them: a UTF-8 byte-order mark (what spreadsheets write) is dropped, CSV
fields may be longer than Python's default limit, a title's line breaks become spaces, and bytes
that are not UTF-8 are a located error, never a traceback. The readers here serve every user table
(question sets too, :mod:`tasks.corpus.questions`).

The corpus artifact's id includes a digest of the files' bytes: edit a file and the corpus, its
index and everything built on it get new ids, while an untouched corpus is never read twice.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field, field_validator

from storage import ArtifactStore
from storage.content_digest import files_digest
from storage.store import write_table
from tasks.corpus.mentions import mention_triples
from tasks.stage_spec import Inputs, Stage

CorpusFormat = Literal["auto", "jsonl", "parquet", "csv", "hf-disk", "hf-hub"]
SUFFIX_FORMATS = {".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet", ".csv": "csv"}
MAX_REPORTED_ERRORS = 20
# Python's csv module refuses fields over 128 KiB by default; a page of a real corpus can be longer.
# The limit is process-wide and is only ever raised here, to 2 GiB (a C long on every platform).
CSV_FIELD_LIMIT = 2**31 - 1
UTF8_BOM = b"\xef\xbb\xbf"


class CorpusError(ValueError):
    """A corpus that cannot be loaded as asked; the message lists every located problem."""


class TableSource(BaseModel):
    """Where a user table (a corpus, a question set) is read from; the readers below take it."""

    model_config = ConfigDict(extra="forbid")

    path: str = Field(
        description="A file, a directory of files, a glob, a dataset saved with save_to_disk, "
        "or a Hugging Face dataset name (format hf-hub)."
    )
    format: CorpusFormat = Field("auto", description="auto picks by file suffix (.jsonl/.parquet/.csv).")
    split: str = Field("train", description="Split of a Hugging Face dataset.")


class CorpusConfig(TableSource):
    id_field: str = Field("id", min_length=1)
    title_field: str = Field("title", min_length=1)
    text_field: str = Field("text", min_length=1)
    duplicates: Literal["error", "keep-first"] = Field(
        "error", description="A repeated id is an error, or only its first occurrence is kept."
    )
    link_titles: bool = Field(
        True, description="Build a graph from mentions of other documents' titles (for corpora without one)."
    )


class CorpusSource(CorpusConfig):
    """A corpus config pinned to the content it read: the digest is part of the artifact id."""

    content_digest: str = Field(min_length=16)

    @field_validator("content_digest")
    @classmethod
    def _hex(cls, value: str) -> str:
        int(value, 16)
        return value


def corpus_files(config: TableSource) -> list[tuple[Path, str]]:
    """The (file, format) pairs a config names, in a stable order."""
    if config.format == "hf-hub":
        return []
    path = Path(config.path).expanduser()
    if config.format == "hf-disk":
        if not path.is_dir():
            raise CorpusError(f"{path}: not a dataset directory (saved with Dataset.save_to_disk)")
        return sorted((p, "hf-disk") for p in path.rglob("*") if p.is_file())
    if path.is_dir():
        candidates = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in SUFFIX_FORMATS)
    elif path.is_file():
        candidates = [path]
    else:
        candidates = sorted(Path(p) for p in glob.glob(config.path) if Path(p).is_file())
    if not candidates:
        raise CorpusError(f"{config.path}: no corpus files found (expected .jsonl, .parquet or .csv)")
    files = []
    for file in candidates:
        fmt = config.format if config.format != "auto" else SUFFIX_FORMATS.get(file.suffix)
        if fmt is None:
            raise CorpusError(f"{file}: unknown corpus format; pass format jsonl, parquet or csv")
        files.append((file, fmt))
    return files


def content_digest(config: TableSource) -> str:
    """sha256 over every file's name and bytes (hub datasets: name, split and resolved fingerprint)."""
    if config.format == "hf-hub":
        key = f"{config.path}|{config.split}|{_hub_dataset(config)._fingerprint}"
        return hashlib.sha256(key.encode()).hexdigest()
    return files_digest(file for file, _ in corpus_files(config))


def pin(config: CorpusConfig) -> CorpusSource:
    return CorpusSource(**config.model_dump(), content_digest=content_digest(config))


# --- reading and validation ----------------------------------------------------------------------


def _records(file: Path, fmt: str) -> Iterator[tuple[str, object]]:
    """(location, record) pairs; a record that is not a mapping is yielded as-is and rejected later."""
    if fmt == "jsonl":
        yield from _jsonl_records(file)
    elif fmt == "csv":
        yield from _csv_records(file)
    elif fmt == "parquet":
        try:
            table = pq.read_table(file)
        except (pa.ArrowException, OSError) as exc:
            yield str(file), CorpusError(f"not a readable Parquet file ({exc})")
            return
        for number, row in enumerate(table.to_pylist()):
            yield f"{file} row {number}", row
    else:
        raise AssertionError(fmt)


def _not_utf8(exc: UnicodeDecodeError, line: bytes) -> CorpusError:
    column = len(line[: exc.start].decode("utf-8", errors="replace")) + 1
    return CorpusError(
        f"not valid UTF-8 (byte 0x{line[exc.start]:02x} at column {column}); save the file as UTF-8"
    )


def _jsonl_records(file: Path) -> Iterator[tuple[str, object]]:
    """Line by line from the bytes, so one undecodable line is reported and the others still read."""
    with file.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if number == 1:
                raw = raw.removeprefix(UTF8_BOM)
            location = f"{file}:{number}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield location, _not_utf8(exc, raw)
                continue
            if not line.strip():
                continue
            try:
                yield location, json.loads(line)
            except json.JSONDecodeError as exc:
                yield location, CorpusError(f"invalid JSON ({exc.msg} at column {exc.colno})")


def _csv_records(file: Path) -> Iterator[tuple[str, object]]:
    """Rows located by the line they end on; bad bytes or broken quoting stop the file, located."""
    csv.field_size_limit(max(csv.field_size_limit(), CSV_FIELD_LIMIT))
    with file.open("rb") as binary, io.TextIOWrapper(binary, encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        try:
            for row in reader:
                yield f"{file}:{reader.line_num}", row
        except UnicodeDecodeError:
            # The text layer decodes ahead in blocks, so its line count is not where the bad byte
            # is: find every undecodable line in the bytes.
            yield from _undecodable_lines(file)
        except csv.Error as exc:
            yield f"{file}:{reader.line_num}", CorpusError(f"malformed CSV ({exc})")


def _undecodable_lines(file: Path) -> Iterator[tuple[str, CorpusError]]:
    with file.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield f"{file}:{number}", _not_utf8(exc, raw)


def _hub_dataset(config: TableSource):
    import datasets

    return datasets.load_dataset(config.path, split=config.split)


def _dataset_records(config: TableSource) -> Iterator[tuple[str, object]]:
    import datasets

    if config.format == "hf-hub":
        dataset = _hub_dataset(config)
    else:
        dataset = datasets.load_from_disk(str(Path(config.path).expanduser()))
        if isinstance(dataset, datasets.DatasetDict):
            if config.split not in dataset:
                raise CorpusError(f"{config.path}: no split {config.split!r} (has {sorted(dataset)})")
            dataset = dataset[config.split]
    for number, row in enumerate(dataset):
        yield f"{config.path} row {number}", row


def read_records(config: TableSource) -> Iterator[tuple[str, object]]:
    """Every record of every file (or dataset row) a source names, with its location.

    A record that could not be read (bad JSON, bytes that are not UTF-8) is yielded as a
    :class:`CorpusError` at its location, so callers report it with the rest.
    """
    if config.format in ("hf-disk", "hf-hub"):
        yield from _dataset_records(config)
        return
    for file, fmt in corpus_files(config):
        yield from _records(file, fmt)


def located_errors(what: str, errors: list[str]) -> str:
    """One message listing located problems, the first ``MAX_REPORTED_ERRORS`` of them in full."""
    shown = "\n  ".join(errors[:MAX_REPORTED_ERRORS])
    more = (
        f"\n  ... and {len(errors) - MAX_REPORTED_ERRORS} more" if len(errors) > MAX_REPORTED_ERRORS else ""
    )
    return f"{what} has {len(errors)} invalid record(s):\n  {shown}{more}"


def _validate(location: str, record: object, config: CorpusConfig) -> tuple[str, str, str] | str:
    """The (id, title, text) of a record, or the located reason it is rejected."""
    if isinstance(record, CorpusError):
        return f"{location}: {record}"
    if not isinstance(record, dict):
        return f"{location}: expected an object with fields, got {type(record).__name__}"
    values = []
    for field in (config.id_field, config.title_field, config.text_field):
        if field not in record or record[field] is None:
            return f"{location}: missing field {field!r}"
        value = record[field]
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            return f"{location}: field {field!r} must be a string, got {type(value).__name__}"
        values.append(str(value))
    doc_id, title, text = values
    # A title is one line: Search-R1's passage format puts it alone on the first line, and a cell
    # wrapped in a spreadsheet carries line breaks that mean nothing.
    title = " ".join(title.split())
    for field, value in ((config.id_field, doc_id), (config.title_field, title), (config.text_field, text)):
        if not value.strip():
            return f"{location}: field {field!r} is empty"
    return doc_id.strip(), title, text


def load_corpus(config: CorpusConfig) -> pa.Table:
    """All documents as an Arrow table (id, title, text, source), or a CorpusError listing problems."""
    ids, titles, texts, sources = [], [], [], []
    seen: dict[str, str] = {}
    errors: list[str] = []
    for location, record in read_records(config):
        checked = _validate(location, record, config)
        if isinstance(checked, str):
            errors.append(checked)
            continue
        doc_id, title, text = checked
        if doc_id in seen:
            if config.duplicates == "error":
                errors.append(f"{location}: duplicate id {doc_id!r} (first at {seen[doc_id]})")
            continue
        seen[doc_id] = location
        ids.append(doc_id)
        titles.append(title)
        texts.append(text)
        sources.append(location)
    if errors:
        raise CorpusError(located_errors(f"corpus {config.path!r}", errors))
    if not ids:
        raise CorpusError(f"corpus {config.path!r} holds no documents")
    return pa.table({"id": ids, "title": titles, "text": texts, "source": sources})


def produce_corpus(work: Path, config: CorpusSource, inputs: Inputs, store: ArtifactStore) -> None:
    if content_digest(config) != config.content_digest:
        raise CorpusError(f"corpus {config.path!r} changed while it was being read; run again")
    table = load_corpus(config)
    write_table(work, table)
    if config.link_titles:
        write_table(
            work,
            mention_triples(
                table.column("id").to_pylist(),
                table.column("title").to_pylist(),
                table.column("text").to_pylist(),
            ),
            name="triples",
        )


STAGE = Stage(name="corpus", kind="corpus", produce=produce_corpus, config_model=CorpusSource)
