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


def test_the_committed_data_and_steps_runs_fit_and_write_their_report(tmp_path):
    from pathlib import Path

    from scaling.fit.joint import main

    ref = Path(__file__).resolve().parents[1] / "outputs/reference"
    runs = [ref / "edgejson_v3_depth" / n for n in ("smol135_gguf-records25-s0", "smol135_gguf-records50-s0",
                                                    "smol135_gguf-s0", "smol135_gguf-s1", "smol135_gguf-s2")]
    runs.append(ref / "edgejson_v3_records_vs_steps/smol135_gguf-records25-epochs2-s0")
    assert main([str(r) for r in runs] + ["--tiers", "overall,complex+", "--out", str(tmp_path)]) == 0
    import json

    out = json.loads((tmp_path / "joint.json").read_text())
    assert [j["records"] for j in out["jobs"]] == [159, 315, 629, 629, 629, 159]
    assert [j["steps"] for j in out["jobs"]] == [23, 47, 94, 94, 93, 46]
    overall = out["fits"]["overall"]
    assert overall["status"] == "ok" and overall["axes"] == ["records", "steps"]
    # Twice the steps on the same 159 records bought 22 answers; twice the records at the same
    # steps 1: the steps coefficient is the one whose interval excludes zero.
    assert overall["coef_ci"][1][0] > 0 > overall["coef_ci"][0][0]
    assert out["fits"]["complex+"]["status"] == "insufficient_points"
    assert "| depth/smol135_gguf" not in (tmp_path / "joint.md").read_text()
    assert "edgejson_v3_depth/smol135_gguf-s0 | 629 | 94 | 100/158" in (tmp_path / "joint.md").read_text()
