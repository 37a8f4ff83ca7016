"""Where the two-hop synthesiser lived. Its eight templates are now the wording of two-hop chains
(:mod:`tasks.synthesis.questions`), one bucket of the governed-difficulty stage
(:mod:`tasks.synthesis.stage`); these names stay importable for older scripts."""

from __future__ import annotations

from tasks.synthesis.evidence import load_tasks
from tasks.synthesis.questions import TWO_HOP_TEMPLATES
from tasks.synthesis.stage import STAGE, SynthesisConfig, gold_facts, synthesize

__all__ = ["STAGE", "TWO_HOP_TEMPLATES", "SynthesisConfig", "gold_facts", "load_tasks", "synthesize"]
