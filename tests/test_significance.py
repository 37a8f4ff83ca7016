"""The paired test of two evaluations: McNemar's exact p and the paired bootstrap interval."""

import math

import pytest

from tasks.evaluate.significance import paired_difference


def outcomes(both_right: int, gained: int, lost: int, both_wrong: int) -> tuple[list[bool], list[bool]]:
    a = [True] * both_right + [False] * gained + [True] * lost + [False] * both_wrong
    b = [True] * both_right + [True] * gained + [False] * lost + [False] * both_wrong
    return a, b


def test_mcnemar_exact_p_is_the_two_sided_binomial_on_the_flips():
    # 12 tasks gained, 3 lost: p = 2 * P(X <= 3), X ~ Binomial(15, 1/2) = 2 * 576 / 32768
    result = paired_difference(*outcomes(80, 12, 3, 105))
    assert result.mcnemar_p == pytest.approx(2 * (1 + 15 + 105 + 455) / 2**15)
    assert (result.wrong_to_right, result.right_to_wrong, result.tasks) == (12, 3, 200)
    assert result.difference == pytest.approx(9 / 200)


def test_paired_interval_is_as_narrow_as_the_flips_allow():
    # 20 gained, 6 lost of 200: the per-task difference has variance 26/200 - 0.07^2, so the normal
    # approximation gives 0.07 +- 1.96 * sqrt(0.1251 / 200); an unpaired interval would be twice as wide.
    result = paired_difference(*outcomes(90, 20, 6, 84))
    half_width = 1.96 * math.sqrt((26 / 200 - 0.07**2) / 200)
    assert result.difference == pytest.approx(0.07)
    assert result.ci_low == pytest.approx(0.07 - half_width, abs=0.01)
    assert result.ci_high == pytest.approx(0.07 + half_width, abs=0.01)
    assert result.ci_low > 0


def test_a_balanced_churn_is_no_difference():
    result = paired_difference(*outcomes(50, 10, 10, 30))
    assert result.difference == 0 and result.mcnemar_p == pytest.approx(1.0)
    assert result.ci_low < 0 < result.ci_high


def test_identical_outcomes_and_mismatched_lengths():
    same = paired_difference([True, False, True], [True, False, True])
    assert (same.difference, same.ci_low, same.ci_high, same.mcnemar_p) == (0, 0, 0, 1.0)
    one = paired_difference([False], [True])  # a slice of one task: nothing to resample
    assert (one.difference, one.ci_low, one.ci_high, one.mcnemar_p) == (1, 1, 1, 1.0)
    with pytest.raises(ValueError, match="differ in length"):
        paired_difference([True], [True, False])
