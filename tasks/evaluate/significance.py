"""Is B really better than A? A paired test of two evaluations on the same held-out tasks.

Two pass@1 figures with overlapping 95% intervals (each about ±7 points on 200 tasks) say little
about their difference: both policies answer the same tasks, and most tasks go the same way for
both. Pairing task by task removes that shared variance. The difference gets a paired percentile
bootstrap interval (resampling tasks, scipy), and the exact McNemar test asks whether the
wrong → right and right → wrong flips could be a fair coin's split (a two-sided binomial test on
the discordant tasks, which is McNemar's exact form).
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, Field
from scipy import stats

from storage.schemas import EvalRow
from tasks.evaluate.buckets import BOOTSTRAP_RESAMPLES, first_samples


class PairedDifference(BaseModel):
    """pass@1 of B minus pass@1 of A on the tasks both scored, with its noise."""

    tasks: int
    difference: float = Field(description="B's pass@1 minus A's, as a fraction (0.05 = 5 points).")
    ci_low: float = Field(description="Lower end of the 95% paired bootstrap interval of the difference.")
    ci_high: float
    wrong_to_right: int
    right_to_wrong: int
    mcnemar_p: float = Field(description="Exact McNemar p-value: 1.0 when no task flipped.")

    def text(self) -> str:
        return (
            f"B − A {100 * self.difference:+.1f} points, 95% paired bootstrap "
            f"[{100 * self.ci_low:+.1f}, {100 * self.ci_high:+.1f}], exact McNemar p = {self.mcnemar_p:.3g} "
            f"({self.wrong_to_right} wrong → right, {self.right_to_wrong} right → wrong of {self.tasks})"
        )


def paired_difference(
    right_a: list[bool], right_b: list[bool], confidence: float = 0.95, seed: int = 0
) -> PairedDifference:
    """``right_a[i]`` and ``right_b[i]`` are the two evaluations' outcomes on the same task ``i``."""
    if len(right_a) != len(right_b):
        raise ValueError(f"paired outcomes differ in length: {len(right_a)} and {len(right_b)}")
    a = np.asarray(right_a, dtype=float)
    b = np.asarray(right_b, dtype=float)
    gained = int(np.sum((b == 1) & (a == 0)))
    lost = int(np.sum((a == 1) & (b == 0)))
    difference = float(b.mean() - a.mean()) if len(a) else 0.0
    p_value = float(stats.binomtest(gained, gained + lost, 0.5).pvalue) if gained + lost else 1.0
    if gained == lost == 0 or len(a) < 2:  # every resample of one task, or of no flip, is the same
        low = high = difference
    else:
        result = stats.bootstrap(
            (a, b),
            lambda x, y, axis: np.mean(y, axis=axis) - np.mean(x, axis=axis),
            paired=True,
            vectorized=True,
            confidence_level=confidence,
            n_resamples=BOOTSTRAP_RESAMPLES,
            method="percentile",
            rng=np.random.default_rng(seed),
        )
        low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    return PairedDifference(
        tasks=len(a),
        difference=difference,
        ci_low=low,
        ci_high=high,
        wrong_to_right=gained,
        right_to_wrong=lost,
        mcnemar_p=p_value,
    )


def greedy_outcomes(rows: list[EvalRow]) -> dict[str, bool]:
    """Each task's first (greedy) sample, the one pass@1 scores: right or not."""
    return {task_id: row.exact_match == 1.0 for task_id, row in first_samples(rows).items()}


def paired_outcomes(a: dict[str, bool], b: dict[str, bool]) -> PairedDifference:
    """Two evaluations' outcomes by task id, paired on the tasks both scored."""
    shared = sorted(a.keys() & b.keys())
    return paired_difference([a[t] for t in shared], [b[t] for t in shared])


def paired_evaluations(rows_a: list[EvalRow], rows_b: list[EvalRow]) -> PairedDifference:
    return paired_outcomes(greedy_outcomes(rows_a), greedy_outcomes(rows_b))
