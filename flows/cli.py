"""``trailforge``: run the pipeline and inspect what it produced.

    trailforge run [--collect.samples-per-task 4 --train.max-steps 40 ...]
    trailforge artifacts [--kind checkpoint] [--stage train]
    trailforge lineage ID
    trailforge runs
    trailforge failures [--stage collect-shard]

Every field of the pipeline's parameter model is a ``--section.field`` flag of ``run``; values are
validated before anything runs, and an error names the flag.
"""

from __future__ import annotations

import argparse
import sys
import types
import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from flows.config import PipelineConfig


def _flag(path: tuple[str, ...]) -> str:
    return "--" + ".".join(part.replace("_", "-") for part in path)


def _leaf_fields(model: type[BaseModel], prefix: tuple[str, ...] = ()):
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from _leaf_fields(annotation, (*prefix, name))
        else:
            yield (*prefix, name), info


def _is_list(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_is_list(a) for a in typing.get_args(annotation))
    return origin is list


def add_config_flags(parser: argparse.ArgumentParser) -> dict[str, tuple[tuple[str, ...], Any]]:
    dests = {}
    for path, info in _leaf_fields(PipelineConfig):
        dest = "cfg__" + "__".join(path)
        default = info.get_default(call_default_factory=True)
        help_text = (info.description or "") + (f" (default: {default})" if default not in (None, "") else "")
        parser.add_argument(_flag(path), dest=dest, metavar="VALUE", help=help_text.replace("%", "%%"))
        dests[dest] = (path, info.annotation)
    return dests


def config_from_args(args: argparse.Namespace, dests: dict) -> PipelineConfig:
    nested: dict[str, Any] = {}
    for dest, (path, annotation) in dests.items():
        value = getattr(args, dest)
        if value is None:
            continue
        if _is_list(annotation):
            value = [v.strip() for v in value.split(",") if v.strip()]
        node = nested
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return PipelineConfig.model_validate(nested)


def format_validation_error(error: ValidationError) -> str:
    lines = ["invalid parameters:"]
    for item in error.errors():
        location = (
            _flag(tuple(str(p) for p in item["loc"] if not isinstance(p, int))) if item["loc"] else "(config)"
        )
        lines.append(f"  {location}: {item['msg']}")
    return "\n".join(lines)


def cmd_run(args: argparse.Namespace, dests: dict) -> int:
    try:
        config = config_from_args(args, dests)
    except ValidationError as error:
        print(format_validation_error(error), file=sys.stderr)
        return 2
    from flows.pipeline import pipeline

    report = pipeline(config)
    print("\nStages:")
    print(report.stage_lines())
    print(f"\n{report.computed} stages ran, {report.cache_hits} were cache hits ({report.seconds:.0f}s).")
    print("\nRound report (held-out tasks):")
    print(report.table())
    return 0


def _catalog(home: str | None):
    from storage import ArtifactStore, Catalog

    return Catalog(ArtifactStore(home).catalog_path)


def cmd_artifacts(args: argparse.Namespace) -> int:
    for row in _catalog(args.home).artifacts(kind=args.kind, stage=args.stage):
        print(
            f"{row['id']}  {row['kind']:16s} {row['stage']:20s} {row['rows']:>7} rows  {row['created_at']:%Y-%m-%d %H:%M:%S}"
        )
    return 0


def cmd_lineage(args: argparse.Namespace) -> int:
    catalog = _catalog(args.home)
    with catalog.session():
        found = catalog.query("SELECT id, kind, stage, rows FROM artifacts WHERE id = ?", [args.id])
        if not found:
            print(f"no artifact {args.id!r} in the catalog", file=sys.stderr)
            return 1
        ancestors, descendants = catalog.ancestors(args.id), catalog.descendants(args.id)
    me = found[0]
    print(f"{me['id']}  {me['kind']} ({me['stage']}, {me['rows']} rows)")
    print("ancestors (what it was derived from):")
    for row in ancestors:
        print(f"  {'  ' * (row['depth'] - 1)}<- {row['id']}  {row['kind']} ({row['stage']}) as {row['role']}")
    print("descendants (what a change to it invalidates):")
    for row in descendants:
        print(f"  {'  ' * (row['depth'] - 1)}-> {row['id']}  {row['kind']} ({row['stage']}) as {row['role']}")
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    rows = _catalog(args.home).query("SELECT * FROM runs ORDER BY started_at")
    for row in rows:
        ended = f"{row['ended_at']:%H:%M:%S}" if row["ended_at"] else "-"
        print(
            f"{row['flow_run_id']}  {row['flow_name']}  {row['state']:10s} {row['started_at']:%Y-%m-%d %H:%M:%S} -> {ended}"
        )
    return 0


def cmd_failures(args: argparse.Namespace) -> int:
    sql = "SELECT stage, item_id, error_class, message, artifact_id FROM failures"
    rows = _catalog(args.home).query(
        sql + (" WHERE stage = ?" if args.stage else "") + " ORDER BY created_at",
        [args.stage] if args.stage else [],
    )
    for row in rows:
        print(f"{row['stage']:16s} {row['item_id']:28s} {row['error_class']:18s} {row['message'][:80]}")
    print(f"{len(rows)} failures")
    return 0


def build_parser() -> tuple[argparse.ArgumentParser, dict]:
    parser = argparse.ArgumentParser(
        prog="trailforge", description="Deep-search agent data and training pipeline."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the pipeline (stages already in the store are reused)")
    dests = add_config_flags(run)
    for name, help_text in [
        ("artifacts", "list artifacts"),
        ("runs", "list flow runs"),
        ("failures", "list item-level failures"),
    ]:
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("--home", help="store root (default: $TRAILFORGE_HOME or ./.trailforge)")
        if name == "artifacts":
            sub.add_argument("--kind")
            sub.add_argument("--stage")
        if name == "failures":
            sub.add_argument("--stage")
    lineage = commands.add_parser("lineage", help="ancestors and descendants of an artifact")
    lineage.add_argument("id")
    lineage.add_argument("--home")
    return parser, dests


def main(argv: list[str] | None = None) -> int:
    parser, dests = build_parser()
    args = parser.parse_args(argv)
    handlers = {
        "artifacts": cmd_artifacts,
        "lineage": cmd_lineage,
        "runs": cmd_runs,
        "failures": cmd_failures,
    }
    if args.command == "run":
        return cmd_run(args, dests)
    return handlers[args.command](args)


if __name__ == "__main__":
    raise SystemExit(main())
