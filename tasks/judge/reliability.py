"""How far each judge can be trusted: agreement, validity against correctness, failures, leaks.

Per judge (a family and a judge name, e.g. ``step:reference``): how many trajectories it judged, how
many of its replies could not be read (after re-asks), the AUROC of its trajectory score for
predicting a correct final answer (SRR-Judge's own validity check: ratings should track
correctness), and for reward models the share of critiques that reveal the gold answer. Per pair of
judges: Spearman's correlation of trajectory scores, and Cohen's kappa on paired ratings where both
rate the same things (steps, search calls, verdicts). The statistics are scipy's and scikit-learn's.

The reference step judge's answer-step rating sees the gold answer, so its AUROC is high by
construction; its process score does not, and is the fair yardstick.
"""

from __future__ import annotations

import math
import warnings
from collections import defaultdict
from itertools import combinations

from storage.schemas import Annotation, Failure, JudgeAgreement, Judgement, JudgeReliability

EXACT_MATCH = "exact-match"


def _finite(value: float) -> float | None:
    return None if value is None or math.isnan(value) else round(float(value), 4)


def auroc(labels: list[int], scores: list[float]) -> float | None:
    from sklearn.metrics import roc_auc_score

    if len(set(labels)) < 2:
        return None  # undefined with one class
    return _finite(roc_auc_score(labels, scores))


def spearman(a: list[float], b: list[float]) -> float | None:
    from scipy.stats import spearmanr

    if len(a) < 3 or len(set(a)) < 2 or len(set(b)) < 2:
        return None
    return _finite(spearmanr(a, b).statistic)


def kappa(a: list[int], b: list[int], weights: str | None = None) -> float | None:
    from sklearn.metrics import cohen_kappa_score

    if not a or len(set(a) | set(b)) < 2:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return _finite(cohen_kappa_score(a, b, weights=weights))


def _ratings(judgement: Judgement) -> list[int]:
    if judgement.family == "step":
        return judgement.step_ratings
    if judgement.family == "usefulness":
        return judgement.useful
    if judgement.family == "outcome":
        return [int(judgement.score)]
    return []


def _failed_trajectory(item_id: str) -> str:
    return item_id.rsplit("#", 2)[0]  # task#sN#rN#id: one per trajectory, whatever the step


def reliability(
    judgements: list[Judgement],
    annotations: list[Annotation],
    failures: list[Failure],
    model_judges: dict[str, str],
) -> tuple[list[JudgeReliability], list[JudgeAgreement]]:
    """``model_judges`` maps a family to the model judge that ran it (failures name only the family)."""
    correct = {a.trajectory_id: int(a.exact_match == 1.0) for a in annotations}
    sources: dict[tuple[str, str], dict[str, Judgement]] = defaultdict(dict)
    for j in judgements:
        sources[(j.family, j.judge)][j.trajectory_id] = j
    for a in annotations:
        sources[("outcome", EXACT_MATCH)][a.trajectory_id] = Judgement(
            trajectory_id=a.trajectory_id, task_id=a.task_id, judge=EXACT_MATCH, family="outcome",
            score=a.exact_match,
        )  # fmt: skip
    for family, judge in model_judges.items():
        sources.setdefault((family, judge), {})
    failed: dict[str, set[str]] = defaultdict(set)
    for f in failures:
        family = f.item_id.rsplit("#", 1)[-1].removesuffix("-model")
        failed[family].add(_failed_trajectory(f.item_id))

    judges = []
    for (family, judge), by_id in sorted(sources.items()):
        asked = [j for j in by_id.values() if j.attempts > 0]
        n_failed = len(failed[family]) if model_judges.get(family) == judge else 0
        ids = [t for t in by_id if t in correct]
        critiques = [j for j in by_id.values() if j.critique] if family == "process" else []
        judges.append(
            JudgeReliability(
                judge=judge,
                family=family,
                judged=len(by_id),
                failed=n_failed,
                parse_failure_rate=round(n_failed / (len(asked) + n_failed), 4) if asked or n_failed else 0.0,
                auroc=None
                if judge == EXACT_MATCH
                else auroc([correct[t] for t in ids], [by_id[t].score for t in ids]),
                mean_score=round(sum(j.score for j in by_id.values()) / len(by_id), 4) if by_id else None,
                critiques=len(critiques),
                leaks=sum(j.leaks_answer for j in critiques),
                leak_rate=round(sum(j.leaks_answer for j in critiques) / len(critiques), 4)
                if critiques
                else None,
            )
        )

    pairs = []
    for (key_a, a), (key_b, b) in combinations(sorted(sources.items()), 2):
        common = sorted(set(a) & set(b))
        paired_a: list[int] = []
        paired_b: list[int] = []
        if key_a[0] == key_b[0]:
            for t in common:
                ra, rb = _ratings(a[t]), _ratings(b[t])
                if len(ra) == len(rb):
                    paired_a += ra
                    paired_b += rb
        ordinal = key_a[0] == "step"
        pairs.append(
            JudgeAgreement(
                judge_a=":".join(key_a),
                judge_b=":".join(key_b),
                trajectories=len(common),
                spearman=spearman([a[t].score for t in common], [b[t].score for t in common]),
                ratings=len(paired_a),
                kappa=kappa(paired_a, paired_b),
                kappa_quadratic=kappa(paired_a, paired_b, "quadratic") if ordinal else None,
            )
        )
    return judges, pairs


def _fmt(value: float | None, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


def format_report(judges: list[JudgeReliability], pairs: list[JudgeAgreement]) -> str:
    lines = [
        "judge                                  judged  failed  parse-fail  AUROC  mean   leaks",
        *(
            f"{j.family + ':' + j.judge:38.38s} {j.judged:6d} {j.failed:7d} {j.parse_failure_rate:10.1%} "
            f"{_fmt(j.auroc):>6s} {_fmt(j.mean_score, '.2f'):>5s} "
            + (f"{j.leaks}/{j.critiques}" if j.critiques else "-")
            for j in judges
        ),
        "",
        "pair                                                         n  spearman  kappa  kappa-q (ratings)",
        *(
            f"{p.judge_a[:28]:28s} ~ {p.judge_b[:28]:28s} {p.trajectories:4d} {_fmt(p.spearman):>8s} "
            f"{_fmt(p.kappa):>6s} {_fmt(p.kappa_quadratic):>7s} ({p.ratings})"
            for p in pairs
        ),
    ]
    return "\n".join(lines)
