"""The code version of a stage: a digest of the source it runs, so an upgrade never reuses stale work.

A constant version string has to be bumped by hand, and in practice it is not: the loss, the loop
and the refine logic all changed under one constant, and old stores were reused silently. Here the
version is derived from the code itself. Starting from the stage's module, every project module it
imports (at any depth, imports inside functions included) is parsed, and the digest covers their
syntax trees with docstrings removed. Editing a comment, a docstring or the formatting keeps ids
(nothing that runs changed); editing any statement the stage can reach gives new ids for the stage
and, through input ids, for everything downstream of it.

The digest is over-inclusive by design: a module the stage imports but never calls still counts.
A spurious rebuild costs time; a stale reuse costs a wrong result.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
from functools import lru_cache
from pathlib import Path

# Only the project's own packages are followed; third-party code is pinned by the environment.
PROJECT_PACKAGES = ("tasks", "storage")


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                if isinstance(body[0].value.value, str):
                    node.body = body[1:] or [ast.Pass()]
    return tree


def _module_file(name: str) -> Path | None:
    if name.split(".")[0] not in PROJECT_PACKAGES:
        return None
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        return None
    return Path(spec.origin)


def _resolve(module: str, node: ast.ImportFrom) -> list[str]:
    """Absolute module names an ``from X import a, b`` may load (X itself, or X.a if a is a module)."""
    if node.level:
        package = module.rsplit(".", node.level)[0]
        base = f"{package}.{node.module}" if node.module else package
    else:
        base = node.module or ""
    return [base, *(f"{base}.{alias.name}" for alias in node.names)]


@lru_cache(maxsize=256)
def _parsed(name: str) -> tuple[str, tuple[str, ...]] | None:
    """(digest of the module's docstring-free syntax tree, project modules it imports)."""
    path = _module_file(name)
    if path is None:
        return None
    tree = ast.parse(path.read_text(), filename=str(path))
    imports: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imports += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            imports += _resolve(name, node)
    normalised = ast.dump(_strip_docstrings(tree), annotate_fields=False, include_attributes=False)
    return hashlib.sha256(normalised.encode()).hexdigest(), tuple(sorted(set(imports)))


def reachable_modules(root: str) -> dict[str, str]:
    """Every project module reachable by imports from ``root``, with its syntax digest."""
    found: dict[str, str] = {}
    todo = [root]
    while todo:
        name = todo.pop()
        if name in found:
            continue
        parsed = _parsed(name)
        if parsed is None:
            continue
        found[name], imports = parsed
        todo += [i for i in imports if i not in found]
    return found


@lru_cache(maxsize=64)
def code_version(root_module: str) -> str:
    """16 hex characters that move whenever code reachable from ``root_module`` moves."""
    modules = reachable_modules(root_module)
    if not modules:
        raise ValueError(f"{root_module!r} is not a module of {', '.join(PROJECT_PACKAGES)}")
    lines = [f"{name} {digest}" for name, digest in sorted(modules.items())]
    # Templates shipped beside the modules (the chat template) shape results as much as code does.
    folders = sorted({path.parent for name in modules if (path := _module_file(name)) is not None})
    for folder in folders:
        for template in sorted(folder.glob("*.jinja")):
            lines.append(f"{template.name} {hashlib.sha256(template.read_bytes()).hexdigest()}")
    payload = "\n".join(lines)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]
