"""The depth ladder's analysis: gains per 100M with seeds, the data axis as its own series,
signal-free metrics, and the report's structure (headline table, a three-sentence answer,
each series described once)."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from scaling.fit import synthetic
from scaling.fit.collect import collect
from scaling.fit.config import Settings
from scaling.fit.fits import fit_logistic, logistic, no_signal, rung_gains
from scaling.fit.run import load_config, run_fit

REPO = Path(__file__).resolve().parents[1]
FAST = ["n_boot=300", "n_boot_fit=5"]
TIERS = ("simple", "medium", "complex")
# The SmolLM2-135M depth ladder's measured sizes (8 / 15 / 22 / 30 blocks).
SIZES = {"d8": 56_632_896, "d15": 81_413_568, "d22": 106_194_240, "d30": 134_515_008}
A = {"simple": -2.6, "medium": -4.0, "complex": -3.3}
B = {"simple": 0.45, "medium": 0.55, "complex": 0.42}     # score = a + b log10 N, per tier


def ladder_models():
    return [synthetic.loglinear_model(k, n, A, B) for k, n in SIZES.items()]


def fit_cfg(tmp_path: Path, *overrides: str) -> dict:
    return load_config([f"out_root={tmp_path / 'fit'}", *FAST, *overrides])


@pytest.fixture(scope="module")
def depth_sweep(tmp_path_factory) -> Path:
    """Four rungs, three seeds at the smallest and the largest, and the data axis at 30 blocks."""
    root = tmp_path_factory.mktemp("depth") / "edgejson_v3_depth"
    models = ladder_models()
    full = models[-1]
    quarter = synthetic.SyntheticModel("d30", SIZES["d30"], {t: full.p[t] * 0.5 for t in TIERS})
    half = synthetic.SyntheticModel("d30", SIZES["d30"], {t: full.p[t] * 0.8 for t in TIERS})
    root = synthetic.make_sweep(root, models, seeds_for={"d8": (0, 1, 2), "d30": (0, 1, 2)},
                                fractions=[(quarter, 0.25, 157), (half, 0.5, 315)], correlation=0.6)
    for res in root.glob("*/results.json"):   # every job records its training records, as real ones do
        d = json.loads(res.read_text())
        if d["data"]["n_train"] is None:
            d["data"]["n_train"] = 629
            res.write_text(json.dumps(d))
    return root


@pytest.fixture(scope="module")
def depth_fit(depth_sweep, tmp_path_factory):
    out = tmp_path_factory.mktemp("depthfit")
    cfg = load_config([f"sweep_dir={depth_sweep}", f"out_root={out}", "name=depth", *FAST])
    return run_fit(cfg, log=lambda m: None, warn=lambda m: None)


# --- gains with seeds, fits -----------------------------------------------------------------


def test_depth_ladder_fit_has_four_sizes_three_seeds_and_gains_for_every_tier(depth_fit):
    doc = json.loads(depth_fit.fit_json.read_text())
    assert doc["headline"]["series"] == "fine-tuned (full), records 100%"
    (series,) = [s for s in doc["series"] if s["label"] == "fine-tuned (full), records 100%"]
    assert [m["key"] for m in series["models"]] == ["d8", "d15", "d22", "d30"]
    assert [len(m["seeds"]) for m in series["models"]] == [3, 1, 1, 3]
    gains = doc["gain_per_100m"]["fine-tuned (full), records 100%"]["json_exact"]
    for tier in ("overall",) + TIERS:
        assert len(gains[tier]) == 3
        assert all(g["ci"] is not None and g["ci"][0] <= g["gain"] <= g["ci"][1] for g in gains[tier])
    curve = next(c for c in doc["curves"] if c["series"] == series["label"] and c["metric"] == "json_exact"
                 and c["tier"] == "complex")
    assert curve["logistic"]["status"] == "ok" and curve["logistic"]["loo_rmse"] is not None
    assert curve["loglinear"]["loo_rmse"] is not None
    assert curve["diminishing_returns"]["kind"] in ("point", "below_everywhere")
    seeds = [p["seeds"] for p in curve["points"]]
    assert [len(s) for s in seeds] == [3, 1, 1, 3]


def test_gain_intervals_cover_the_known_gains_and_seeds_enter_the_bootstrap(depth_fit):
    a = depth_fit.analysis
    label = "fine-tuned (full), records 100%"
    models = ladder_models()
    hits = total = 0
    for tier in TIERS:
        c = a.curve(label, "json_exact", tier)
        true = [m.p[tier] for m in models]
        for i, g in enumerate(c.gains):
            truth = (true[i + 1] - true[i]) / ((c.N[i + 1] - c.N[i]) / 1e8)
            hits += g.ci[0] <= truth <= g.ci[1]
            total += 1
        span = c.span
        assert span.ci[0] <= (true[-1] - true[0]) / ((c.N[-1] - c.N[0]) / 1e8) <= span.ci[1]
    assert hits >= total - 1          # 95% intervals: at most one of nine steps may miss
    # a model's three seeds are averaged per example and resampled: its replicates vary more
    # than the examples alone would make them (d8 has 3 seeds)
    sc = a.series_scores(label)
    row = sc.row("json_exact", "overall")
    assert len(sc.models[0].seeds) == 3 and np.std(row.reps[:, 0]) > 0


def test_logistic_leave_one_size_out_with_four_sizes_holds_the_floor():
    N = np.array([5.7e7, 8.1e7, 1.06e8, 1.35e8])
    y = logistic(np.log10(N), 0.0, 0.9, 6.0, 7.95)
    fit = fit_logistic(N, y)
    assert fit.ok and fit.loo_rmse is not None and fit.loo_rmse < 0.05
    assert fit.loo_note == "refits to 3 sizes hold the floor at 0"



def test_logistic_leave_one_size_out_counts_every_refit_on_step_like_data():
    # the measured depth ladder (0 / 2.5 / 44.3 / 63.3% at 57-135M) is nearly a step: each
    # refit to three sizes drives k to its bound; those refits must still count, or the LOO
    # error comes from the one trivial refit (leaving out the floor) and reads ~0
    N = np.array([56.6e6, 81.4e6, 106.2e6, 134.5e6])
    y = np.array([0.0, 0.0253, 0.443, 0.633])
    fit = fit_logistic(N, y)
    assert fit.ok and fit.loo_note == "refits to 3 sizes hold the floor at 0"
    assert fit.loo_rmse > 0.05


# --- the data axis ----------------------------------------------------------------------------


def test_train_fractions_are_their_own_series_and_a_data_curve(depth_fit):
    a = depth_fit.analysis
    labels = {s.label: [m.key for m in s.models] for s in a.collection.series}
    assert labels == {"fine-tuned (full), records 100%": ["d8", "d15", "d22", "d30"],
                      "fine-tuned (full), records 25%": ["d30"], "fine-tuned (full), records 50%": ["d30"]}
    (d,) = a.data
    assert d.model == "d30" and d.fractions == (0.25, 0.5, 1.0) and d.n_train == (157, 315, 629)
    assert [len(s) for s in d.seeds] == [1, 1, 3]
    p = d.point[("json_exact", "complex")]
    assert p[0] < p[2]
    steps = d.steps[("json_exact", "overall")]
    assert [(s.from_fraction, s.to_fraction) for s in steps] == [(0.25, 0.5), (0.5, 1.0)]
    assert all(s.ci[0] <= s.delta <= s.ci[1] for s in steps)
    assert "data_axis" in {f.name for f in depth_fit.figures}
    assert (depth_fit.out_dir / "tables" / "data_axis.md").read_text().count("d30") == 12
    doc = json.loads(depth_fit.fit_json.read_text())
    assert doc["data_axis"][0]["fractions"] == [0.25, 0.5, 1.0]


# --- the report ------------------------------------------------------------------------------


def sections(report: str) -> list[str]:
    return re.findall(r"^## (.+)$", report, flags=re.M)


def answer_of(report: str) -> str:
    return report.split("## Answer\n\n", 1)[1].split("\n", 1)[0]


def sentences(text: str) -> list[str]:
    # sentence ends: a full stop after a word or a closing bracket, before a space and a capital
    return [s for s in re.split(r"(?<=[A-Za-z0-9)\]%`])\.\s+(?=[A-Z])", text.strip()) if s]


def assert_no_repeated_prose(report: str) -> None:
    lines = [ln for ln in report.splitlines() if ln.strip() and not ln.startswith("|")]
    repeated = [ln for ln, n in Counter(lines).items() if n > 1]
    assert not repeated, repeated


def test_report_opens_with_the_headline_table_and_a_three_sentence_answer(depth_fit):
    report = depth_fit.report.read_text()
    assert sections(report)[:3] == ["Headline: fine-tuned (full), records 100%", "Answer", "Verdicts"]
    table = report.split("## Headline", 1)[1].split("## Answer", 1)[0]
    assert "| tier | rung | params | seeds | JSONExact (%) | Field F1 (%) | Schema compliance (%) |" in table
    assert table.count("| d8 |") == 4 and "| 57M | 3 |" in table
    answer = answer_of(report)
    assert len(sentences(answer)) == 3, sentences(answer)
    assert answer.startswith("From `d8` (57M) to `d30` (135M), JSONExact goes from ")
    assert "Per tier" in answer and "complex" in answer and "falls below 5 points per 100M" in answer
    doc = json.loads(depth_fit.fit_json.read_text())
    assert len(doc["headline"]["answer"]) == 3
    assert_no_repeated_prose(report)


def test_verdicts_and_single_size_series_are_named_once(depth_fit):
    report = depth_fit.report.read_text()
    verdicts = report.split("## Verdicts", 1)[1].split("\n## ", 1)[0]
    assert verdicts.count("Not judged") == 1
    assert "Not judged: none of the 3 measured fine-tuned series has a rung near 360M (Track 1) or 200M " \
           "(Track 2)." in verdicts
    single = [ln for ln in report.splitlines() if ln.startswith("Series with one size")]
    assert len(single) == 1 and "records 25%" in single[0] and "published base" in single[0]
    assert "insufficient" not in report


def test_verdict_is_given_once_per_series_with_the_rung(tmp_path):
    strong = synthetic.SyntheticModel("big", 361_821_120, {"simple": 0.9, "medium": 0.8, "complex": 0.6})
    root = synthetic.make_sweep(tmp_path / "v", [synthetic.DEFAULT_LADDER[0], strong])
    run = run_fit(fit_cfg(tmp_path, f"sweep_dir={root}", "include_published=false"), log=lambda m: None,
                  warn=lambda m: None)
    report = run.report.read_text()
    assert report.count("**Track 1: is capacity the bottleneck? (360M rung)** — fine-tuned (full): rung `big`") == 1
    assert "**capacity bottleneck confirmed**" in report
    assert report.count("Not judged") == 1
    assert "Not judged: the only measured fine-tuned series has no rung near 200M (Track 2)." in report
    assert_no_repeated_prose(report)


def write_flat_sweep(root: Path) -> Path:
    """The demo's situation: three tiny rungs, JSONExact 0 everywhere, Field F1 rising."""
    ex = synthetic.make_examples({"simple": 20, "medium": 16, "complex": 8}, rng=0)
    rng = np.random.default_rng(0)
    for k, (key, n, f1) in enumerate((("tiny_s", 212_000, 0.12), ("tiny_m", 911_000, 0.23),
                                      ("tiny_l", 2_625_000, 0.31))):
        base = {"simple": 1.6, "medium": 0.8, "complex": 0.4}
        mean = np.array([min(0.95, f1 * base[t]) for t in ex.tiers])
        values = {m: np.zeros(len(ex.ids)) for m in synthetic.METRICS}
        values["field_f1"] = np.clip(mean + rng.normal(0, 0.05, len(ex.ids)), 0, 1)
        values["field_f1_toplevel"] = values["field_f1"]
        values["schema_compliance"] = np.ones(len(ex.ids))
        values["compliance_keys_types"] = np.ones(len(ex.ids))
        synthetic.write_job(root / f"{k}_{key}", synthetic.SyntheticModel(key, n, {t: 0.0 for t in TIERS}), ex, values,
                            seed=0)
    return root


def test_a_metric_without_signal_says_so_and_names_the_metric_that_moved(tmp_path):
    root = write_flat_sweep(tmp_path / "demo")
    run = run_fit(fit_cfg(tmp_path, f"sweep_dir={root}"), log=lambda m: None, warn=lambda m: None)
    report = run.report.read_text()
    answer = answer_of(report)
    assert len(sentences(answer)) == 3, sentences(answer)
    assert answer.startswith("JSONExact has no signal on this ladder: every rung (0.2M to 2.6M) scores 0 on every tier")
    assert "Field F1 is what moved: 1" in answer and "By tier, Field F1: simple" in answer
    assert "+0.0 [+0.0, +0.0]" not in report
    assert "between 0.2M and 0.9M" not in report and "between 0.9M and 2.6M" not in report
    assert "no signal (both 0)" in report and "no signal: all rungs 0" in report
    doc = json.loads(run.fit_json.read_text())
    g = doc["gain_per_100m"]["fine-tuned (full)"]["json_exact"]["overall"]
    assert {x["status"] for x in g} == {"no_signal"}
    dr = doc["diminishing_returns"]["fine-tuned (full)"]["json_exact"]["complex"]
    assert dr["kind"] == "no_signal"
    assert_no_repeated_prose(report)


def test_the_headline_metric_is_chosen_by_the_config(tmp_path):
    root = write_flat_sweep(tmp_path / "demo")
    run = run_fit(fit_cfg(tmp_path, f"sweep_dir={root}", "headline_metric=field_f1", "include_published=false"),
                  log=lambda m: None, warn=lambda m: None)
    report = run.report.read_text()
    answer = answer_of(report)
    assert answer.startswith("From `tiny_s` (0.2M) to `tiny_l` (2.6M), Field F1 goes from ")
    assert "Field F1 gain / 100M from the rung below" in report
    with pytest.raises(Exception, match="headline_metric"):
        Settings.from_config({"headline_metric": "accuracy"})


def test_no_signal_needs_every_replicate_at_the_floor():
    assert no_signal([0.0, 0.0, 0.0]) == "all rungs 0"
    assert no_signal([1.0, 1.0], np.ones((5, 2))) == "all rungs 100%"
    assert no_signal([0.0, 0.02]) is None
    assert no_signal([0.0, 0.0], np.array([[0.0, 0.0], [0.0, 0.04]])) is None
    g = rung_gains([1e6, 2e6, 3e6], [0.0, 0.0, 0.1])
    assert [x.status for x in g] == ["no_signal", "ok"]


def test_the_committed_reference_sweep_says_once_what_is_missing(tmp_path):
    ref = REPO / "outputs" / "reference" / "edgejson_v3"
    if not ref.is_dir():
        pytest.skip("outputs/reference/edgejson_v3 is not in this checkout")
    run = run_fit(fit_cfg(tmp_path, f"sweep_dir={ref}"), log=lambda m: None, warn=lambda m: None)
    report = run.report.read_text()
    assert sections(report)[:3][1:] == ["Answer", "Verdicts"] and sections(report)[0].startswith("Headline: ")
    answer = answer_of(report)
    assert len(sentences(answer)) == 3, sentences(answer)
    assert "has one size, `smol135_gguf` (135M)" in answer and "need two or more sizes" in answer
    assert "published fine-tuned reports JSONExact 24.7% at SmolLM2-135M and 55.1% at SmolLM2-360M" in answer
    assert report.count("Not judged") == 1 and "insufficient" not in report
    assert report.count("Series with one size") == 1
    assert report.lower().count("paired-bootstrap intervals of gains and fits there are too narrow") == 1
    assert_no_repeated_prose(report)


def test_a_depth_record_keeps_an_overridden_rung_apart_from_the_full_model(tmp_path):
    # `model=smol135 model.depth={keep:8}` keeps the key smol135: the record makes it smol135_d8
    root = synthetic.make_sweep(tmp_path / "sw", synthetic.DEFAULT_LADDER[:1],
                                n_per_tier={"simple": 6, "medium": 4, "complex": 2})
    small = synthetic.SyntheticModel("smol-135m", 56_632_896, {"simple": 0.2, "medium": 0.1, "complex": 0.0})
    ex = synthetic.make_examples({"simple": 6, "medium": 4, "complex": 2}, rng=0)
    synthetic.write_job(root / "99_pruned", small, ex, synthetic.simulate(small, ex, 0, np.random.default_rng(1)),
                        seed=0, depth={"rule": "block_influence", "keep": 8, "n_blocks": 30,
                                       "kept": list(range(8)), "dropped": list(range(8, 30))})
    messages: list[str] = []
    col = collect([root], log=messages.append)
    assert [m.key for m in col.series[0].models] == ["smol-135m_d8", "smol-135m"]
    assert not any("reports params" in m for m in messages)
    # a second seed of the rung that kept other blocks is still a seed, with a warning
    synthetic.write_job(root / "98_pruned_s1", small, ex, synthetic.simulate(small, ex, 1, np.random.default_rng(2)),
                        seed=1, depth={"rule": "indices", "keep": 8, "n_blocks": 30, "kept": list(range(22, 30)),
                                       "dropped": list(range(22))})
    messages.clear()
    col = collect([root], log=messages.append)
    assert col.series[0].models[0].seeds == (0, 1)
    assert any("kept blocks [22, 23" in m and "model.depth" in m for m in messages)


def test_the_committed_depth_fit_follows_from_its_runs(tmp_path):
    """Issue 16's done-when on the committed runs: the depth sweep refits to >= 4 sizes with
    3 seeds at two of them, a gain with an interval for every tier, and the same points as
    the committed fit.json (the data axis as its own series)."""
    ref = REPO / "outputs" / "reference" / "edgejson_v3_depth"
    if not (ref / "fit" / "fit.json").is_file():
        pytest.skip("outputs/reference/edgejson_v3_depth is not in this checkout")
    run = run_fit(fit_cfg(tmp_path, f"sweep_dir={ref}", "name=depth"), log=lambda m: None, warn=lambda m: None)
    doc, committed = json.loads(run.fit_json.read_text()), json.loads((ref / "fit" / "fit.json").read_text())
    label = "fine-tuned (full), records 100%"
    (series,) = [s for s in doc["series"] if s["label"] == label]
    assert len(series["models"]) >= 4
    assert sum(len(m["seeds"]) >= 3 for m in series["models"]) >= 2
    gains = doc["gain_per_100m"][label]["json_exact"]
    for tier in ("overall",) + TIERS:
        assert gains[tier] and all(g["ci"] is not None for g in gains[tier])
        assert [g["gain"] for g in gains[tier]] == pytest.approx(
            [g["gain"] for g in committed["gain_per_100m"][label]["json_exact"][tier]])
    assert [s["label"] for s in doc["series"]] == [s["label"] for s in committed["series"]]
    steps = doc["data_axis"][0]["scores"]["json_exact"]["overall"]
    assert [p["n_train"] for p in steps] == [159, 315, 629]
    assert [p["score"] for p in steps] == pytest.approx(
        [p["score"] for p in committed["data_axis"][0]["scores"]["json_exact"]["overall"]])
