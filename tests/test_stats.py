"""scaling.stats: proportion intervals that stay honest at 0% and 100%, the paired difference of
proportions, and the committed tables: no interval there collapses to a point at 0 or 100%."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from scaling.stats import (bootstrap_ci, bootstrap_intervals, bounded_mean_intervals, clopper_pearson_interval,
                           paired_proportion_difference, proportion_interval, proportion_intervals, ratio_interval,
                           stratified_weights, wilson_interval)

REPO = Path(__file__).resolve().parents[1]


def test_wilson_and_clopper_pearson_at_the_edges():
    # The numbers: 0 of 25 is compatible with up to ~13%.
    lo, hi = wilson_interval(0, 25)
    assert lo == 0.0 and round(hi * 100, 1) == 13.3
    lo, hi = clopper_pearson_interval(0, 25)
    assert lo == 0.0 and round(hi * 100, 1) == 13.7
    lo, hi = wilson_interval(25, 25)
    assert hi == 1.0 and round(lo * 100, 1) == 86.7
    assert clopper_pearson_interval(25, 25)[1] == 1.0


@pytest.mark.parametrize(("k", "n"), [(1, 10), (4, 25), (79, 158), (157, 158)])
def test_proportion_intervals_contain_the_share_and_mirror(k, n):
    for interval in (wilson_interval, clopper_pearson_interval):
        lo, hi = interval(k, n)
        assert 0 < lo < k / n < hi < 1
        mlo, mhi = interval(n - k, n)
        assert mlo == pytest.approx(1 - hi) and mhi == pytest.approx(1 - lo)
        wider = interval(k, n, level=0.99)
        assert wider[0] < lo and wider[1] > hi
    # Clopper-Pearson is the conservative one.
    assert clopper_pearson_interval(k, n)[1] >= wilson_interval(k, n)[1]
    assert proportion_interval(k / n, n) == pytest.approx(wilson_interval(k, n))
    assert proportion_interval(k / n, n, method="clopper_pearson") == pytest.approx(clopper_pearson_interval(k, n))


def test_wilson_covers_about_the_nominal_level_where_a_bootstrap_does_not():
    # 25 examples at a 5% success rate: the percentile bootstrap collapses whenever none is
    # right; Wilson's 95% interval holds the true rate in >= 93% of samples.
    rng = np.random.default_rng(0)
    n, p, trials = 25, 0.05, 4000
    ks = rng.binomial(n, p, size=trials)
    covered = np.mean([lo <= p <= hi for lo, hi in (wilson_interval(k, n) for k in ks)])
    assert covered >= 0.93


def test_paired_difference_of_proportions():
    a = np.array([1] * 30 + [0] * 70)
    b = np.array([1] * 25 + [0] * 5 + [1] * 20 + [0] * 50)  # 5 lost, 20 gained
    lo, hi = paired_proportion_difference(a, b)
    d = b.mean() - a.mean()
    assert lo < d < hi and lo > 0  # a clear gain
    # For many examples it is close to the normal approximation of the paired difference.
    n = len(a)
    gained, lost = 20, 5
    se = np.sqrt(gained + lost - (gained - lost) ** 2 / n) / n
    assert lo == pytest.approx(d - 1.96 * se, abs=0.02) and hi == pytest.approx(d + 1.96 * se, abs=0.02)
    # No example differs: the paired bootstrap would say [0, 0]; this says how far the truth may be.
    same = np.array([1, 1, 0, 0, 1, 0, 1, 1])
    lo, hi = paired_proportion_difference(same, same)
    assert lo < 0 < hi and hi - lo > 0.1
    # Every example gained: an interval that ends at +100 but does not start there.
    lo, hi = paired_proportion_difference([0, 0], [1, 1])
    assert hi == 1.0 and 0 < lo < 0.9


def test_the_bootstraps_of_one_run_share_one_draw():
    rng = np.random.default_rng(3)
    values = np.column_stack([rng.random(40), rng.random(40) < 0.3])
    both = bootstrap_intervals(values, n_boot=500, seed=5)
    assert both.shape == (2, 2)
    for j in range(2):
        assert (float(both[0, j]), float(both[1, j])) == bootstrap_ci(values[:, j], n_boot=500, seed=5)


def test_a_ratio_of_sums_resamples_units_and_falls_back_to_wilson_when_it_collapses():
    right = np.array([3.0, 0.0, 5.0, 1.0])
    total = np.array([4.0, 2.0, 5.0, 4.0])
    w = stratified_weights(["a"] * 4, 400, np.random.default_rng(0))
    lo, hi = ratio_interval(w, right, total)
    assert lo < right.sum() / total.sum() < hi
    # no leaf right anywhere: every replicate says 0; Wilson's bound over the 4 units instead
    assert ratio_interval(w, np.zeros(4), total) == wilson_interval(0, 4)


def test_several_models_at_once():
    lo, hi = proportion_intervals(np.array([0.0, np.nan, 0.5]), 20)
    assert (lo[0], hi[0]) == wilson_interval(0, 20) and np.isnan(lo[1]) and (lo[2], hi[2]) == wilson_interval(10, 20)
    lo, hi = bounded_mean_intervals(np.array([0.0, 0.4]), 20, np.array([0.0, 0.3]), np.array([0.0, 0.5]))
    assert (lo[0], hi[0]) == wilson_interval(0, 20) and (lo[1], hi[1]) == (0.3, 0.5)


# --- the committed tables ------------------------------------------------------------------------

COLLAPSED = re.compile(r"\[\s*[+-]?0(?:\.0+)?%?\s*,\s*[+-]?0(?:\.0+)?%?\s*\]|\[\s*\+?100(?:\.0+)?%?\s*,\s*\+?100(?:\.0+)?%?\s*\]")
#: Published model versions are immutable (README, "Export and deployment"): their cards keep
#: the intervals they were published with; the next version's card has Wilson intervals.
IMMUTABLE = ("outputs/models/",)


def committed_tables() -> list[str]:
    files = subprocess.run(["git", "ls-files", "*.md", "*.tex"], cwd=REPO, capture_output=True, text=True,
                           check=True).stdout.split()
    return [f for f in files if not f.startswith(IMMUTABLE)]


def test_the_pattern_finds_collapsed_intervals():
    for text in ("0.0 [0.0, 0.0]", "100.0 [100.0, 100.0]", "+0.0 [+0.0, +0.0]", "0% [0%, 0%]", "[-0.0, 0.0]"):
        assert COLLAPSED.search(text), text
    for text in ("0.0 [0.0, 13.3]", "100.0 [86.7, 100.0]", "+8.0 [+0.0, +20.0]", "[0.0, 100.0]"):
        assert not COLLAPSED.search(text), text


def test_no_committed_table_has_an_interval_collapsed_at_0_or_100():
    found = []
    tables = committed_tables()
    assert any("edgejson_v3_depth/fit/tables/headline.md" in f for f in tables)
    for name in tables:
        for i, line in enumerate((REPO / name).read_text(encoding="utf-8").splitlines(), 1):
            if "|" in line or "&" in line or "[" in line:
                for m in COLLAPSED.finditer(line):
                    found.append(f"{name}:{i}: {m.group(0)}")
    assert not found, "\n".join(found[:30])
