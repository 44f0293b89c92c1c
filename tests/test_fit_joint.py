"""The joint fit in records and steps recovers known coefficients from synthetic jobs and
says why when it cannot fit."""

from __future__ import annotations

import math

import numpy as np

from scaling.fit.joint import JointStatus, fit_joint


def _jobs(a, b_records, b_steps, n, seed=0):
    rng = np.random.default_rng(seed)
    records, steps, right = [], [], []
    for r in (150, 300, 600, 1200):
        for s in (60, 120, 240, 480):
            p = 1 / (1 + math.exp(-(a + b_records * math.log10(r) + b_steps * math.log10(s))))
            records.append(r), steps.append(s), right.append(int(rng.binomial(n, p)))
    return right, [n] * len(right), records, steps


def test_known_coefficients_are_recovered_inside_their_intervals():
    right, n, records, steps = _jobs(-6.0, 1.2, 0.8, n=4000)
    fit = fit_joint(right, n, records, steps)
    assert fit.status is JointStatus.OK and fit.axes == ("records", "steps")
    for true, est, (lo, hi) in zip((1.2, 0.8), fit.coef, fit.coef_ci):
        assert lo < true < hi and abs(est - true) < 0.15
    assert fit.heldout_mae < 1.5  # points
    assert abs(fit.predict(records=600, steps=240) - 1 / (1 + math.exp(-(-6 + 1.2 * math.log10(600)
                                                                          + 0.8 * math.log10(240))))) < 0.02


def test_an_axis_that_buys_nothing_gets_an_interval_around_zero():
    right, n, records, steps = _jobs(-2.0, 0.0, 1.0, n=4000, seed=1)
    fit = fit_joint(right, n, records, steps)
    lo, hi = fit.coef_ci[0]
    assert lo < 0 < hi


def test_what_cannot_be_fitted_says_so():
    assert fit_joint([3, 4], [25, 25], [629, 629], [79, 79]).status is JointStatus.NO_VARIATION
    few = fit_joint([3, 6], [25, 25], [314, 629], [40, 79])
    assert few.status is JointStatus.INSUFFICIENT_POINTS and "hold out" in few.note
    # Every job all right: the likelihood has no maximum.
    assert fit_joint([25, 25, 25, 25], [25] * 4, [100, 200, 400, 800], [10, 20, 30, 40]).status is \
        JointStatus.FAILED
    assert fit_joint([25, 25, 25, 25], [25] * 4, [100, 200, 400, 800], [10, 20, 30, 40]).predict(records=1,
                                                                                                steps=1) is None
