"""scaling.compare: paired deltas, McNemar, refusals and clear errors, on made-up runs (known
answers), on the committed reference runs, and end to end on tiny synthetic jobs."""

from __future__ import annotations

import json
from math import comb
from pathlib import Path

import pytest

from scaling.compare import CompareError, build, load_run, markdown, mcnemar_exact, write
from scaling.compare.__main__ import main
from scaling.compare.datacheck import check_version, diff_versions
from scaling.metrics import aggregate

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO / "outputs" / "reference" / "edgejson_v3"
AFFECTED = ("invoice", "order_details", "shopping_cart")
TEST_SHA = "1" * 64
TRAIN_SHA = "2" * 64

# 40 made-up examples: 4 schemas over 3 tiers, 10 each.
SCHEMAS = (("s_a", "simple"), ("s_b", "simple"), ("m_a", "medium"), ("c_a", "complex"))
IDS = [(f"{sid}_{k:02d}", sid, tier) for sid, tier in SCHEMAS for k in range(10)]


def make_run(root: Path, name: str, right: set[str], *, f1: dict[str, float] | None = None, test_sha: str = TEST_SHA,
             train_sha: str = TRAIN_SHA, method: str = "full", drop: set[str] = frozenset(),
             status: str = "completed") -> Path:
    """A run folder in the real results.json / predictions.jsonl format: ``right`` are the ids
    answered exactly (F1 1, compliant); the others get F1 ``f1.get(id, 0.5)`` and are compliant
    when their index is even."""
    rows = []
    for k, (i, sid, tier) in enumerate(IDS):
        if i in drop:
            continue
        ok = i in right
        rows.append({"id": i, "schema_id": sid, "tier": tier, "output": "{}", "status": "ok" if ok else "schema_error",
                     "json_exact": ok, "field_f1": 1.0 if ok else (f1 or {}).get(i, 0.5), "field_f1_toplevel": 0.0,
                     "schema_compliance": ok or k % 2 == 0, "compliance_keys_types": ok})
    run = root / name
    run.mkdir(parents=True)
    (run / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    results = {
        "results_version": 1, "status": status,
        "error": {"type": "RuntimeError", "message": "out of memory", "traceback": ""} if status == "failed" else None,
        "data": {"name": "edgejson", "version": "v3", "eval_split": "test",
                 "files": {"d/v3/train.jsonl": train_sha, "d/v3/test.jsonl": test_sha, "d/schemas/simple/s_a.json": "3" * 64}},
        "model": {"key": "tiny"}, "finetune": {"method": method}, "decode": {"mode": "greedy"},
        "config": {"data": {"root": "d", "version": "v3"}, "finetune": {"method": method}},
        "metrics": aggregate(rows, n_boot=10) if status == "completed" else None,
    }
    (run / "results.json").write_text(json.dumps(results))
    return run


def ids_where(pred) -> set[str]:
    return {i for i, sid, tier in IDS if pred(i, sid, tier)}


# ----------------------------------------------------------------------------- statistics


def test_mcnemar_exact_known_values():
    # no discordant pair: no evidence either way
    assert mcnemar_exact([1, 0, 1], [1, 0, 1]).p == 1.0
    # 5 gained, 0 lost: two-sided binomial p = 2 * (1/2)^5
    m = mcnemar_exact([0] * 5 + [1], [1] * 5 + [1])
    assert (m.gained, m.lost, m.both_right, m.both_wrong) == (5, 0, 1, 0)
    assert m.p == pytest.approx(2 / 32)
    # 10 gained, 2 lost: p = 2 * P(X >= 10 | n=12, 1/2)
    a = [1, 1] + [0] * 10 + [0, 1]
    b = [0, 0] + [1] * 10 + [0, 1]
    m = mcnemar_exact(a, b)
    assert (m.gained, m.lost) == (10, 2)
    assert m.p == pytest.approx(2 * sum(comb(12, k) for k in range(10, 13)) / 2 ** 12)  # 0.0386


def test_identical_runs_have_zero_deltas_and_p_one(tmp_path):
    right = ids_where(lambda i, s, t: int(i[-2:]) % 3 == 0 or t == "simple")
    a = make_run(tmp_path, "a", right)
    b = make_run(tmp_path, "b", right)
    cmp = build([a, b], n_boot=500)
    (pair,) = cmp.pairs
    assert pair.gained == [] and pair.lost == []
    kinds = {r.kind for r in pair.rows}
    assert kinds == {"overall", "tier", "schema"}
    for row in pair.rows:
        assert row.mcnemar.p == 1.0 and row.mcnemar.discordant == 0
        for m, d in row.metrics.items():
            assert d.delta == 0.0 and d.a == d.b
            # The paired bootstrap collapses at 0: a 0/1 metric takes Newcombe's interval, which
            # says how far apart the runs could still be; Field F1 has none ("all equal").
            if m == "field_f1":
                assert d.method == "none" and d.ci is None
            else:
                assert d.method == "newcombe" and d.ci[0] < 0 < d.ci[1]
    assert "[0.0, 0.0]" not in markdown(cmp) and "(all equal)" in markdown(cmp)


def test_known_flip_set_counts_deltas_and_p(tmp_path):
    base_right = ids_where(lambda i, s, t: t == "simple")                   # 20 simple examples
    lost = {"s_a_00", "s_b_00"}                                               # right in a only
    gained = ids_where(lambda i, s, t: s in ("m_a",))                        # 10 medium, right in b only
    a = make_run(tmp_path, "a", base_right)
    b = make_run(tmp_path, "b", (base_right - lost) | gained)
    cmp = build([a, b], labels=["base", "new"], n_boot=2000)
    (pair,) = cmp.pairs
    assert {i for i, _, _ in pair.gained} == gained and {i for i, _, _ in pair.lost} == lost
    ov = pair.row("overall")
    assert (ov.mcnemar.gained, ov.mcnemar.lost, ov.mcnemar.both_right, ov.mcnemar.both_wrong) == (10, 2, 18, 10)
    assert ov.mcnemar.p == pytest.approx(158 / 4096)
    ex = ov.metrics["json_exact"]
    assert (ex.a, ex.b, ex.delta) == pytest.approx((20 / 40, 28 / 40, 8 / 40))
    assert ex.ci[0] < 0.2 < ex.ci[1] and ex.ci[0] > 0  # 10 against 2 flips: the interval excludes 0
    medium = pair.row("medium")
    assert medium.n == 10 and medium.metrics["json_exact"].delta == pytest.approx(1.0)
    assert medium.mcnemar.p == pytest.approx(2 / 2 ** 10)
    simple = pair.row("simple")
    assert simple.metrics["json_exact"].delta == pytest.approx(-2 / 20) and simple.mcnemar.lost == 2
    # unchanged examples: their F1 and compliance do not move
    assert pair.row("complex").metrics["field_f1"].delta == 0.0
    # F1: a lost example falls 1 -> 0.5, a gained one rises 0.5 -> 1
    assert ov.metrics["field_f1"].delta == pytest.approx((10 * 0.5 - 2 * 0.5) / 40)


def test_groups_split_named_schemas_from_the_others(tmp_path):
    a = make_run(tmp_path, "a", set())
    b = make_run(tmp_path, "b", ids_where(lambda i, s, t: s == "m_a"))
    cmp = build([a, b], groups={"mine": ["m_a", "c_a"]}, n_boot=200)
    (pair,) = cmp.pairs
    assert pair.row("mine").n == 20 and pair.row("others").n == 20
    assert pair.row("mine").metrics["json_exact"].delta == pytest.approx(0.5)
    assert pair.row("others").metrics["json_exact"].delta == 0.0
    with pytest.raises(CompareError, match="--group mine: schema 'invoce' has no example"):
        build([a, b], groups={"mine": ["invoce"]}, n_boot=10)
    with pytest.raises(CompareError, match="'m_a' is already in group 'x'"):
        build([a, b], groups={"x": ["m_a"], "y": ["m_a"]}, n_boot=10)


def test_all_pairs_compares_every_later_run_with_every_earlier_one(tmp_path):
    runs = [make_run(tmp_path, n, ids_where(lambda i, s, t, k=k: int(i[-2:]) % 4 < k)) for k, n in enumerate("abc")]
    assert [(p.a, p.b) for p in build(runs, n_boot=10).pairs] == [("a", "b"), ("a", "c")]
    assert [(p.a, p.b) for p in build(runs, all_pairs=True, n_boot=10).pairs] == [("a", "b"), ("a", "c"), ("b", "c")]


# ------------------------------------------------------------------------------- refusals


def test_runs_on_different_test_files_are_refused_unless_intersected(tmp_path, capsys):
    a = make_run(tmp_path, "a", set())
    b = make_run(tmp_path, "b", set(), test_sha="f" * 64, drop={"s_a_00"})
    with pytest.raises(CompareError) as e:
        build([a, b], n_boot=10)
    msg = str(e.value)
    assert "different data" in msg and "--intersect" in msg and "111111111111" in msg and "ffffffffffff" in msg
    assert main([str(a), str(b), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "different data" in err and "Traceback" not in err

    cmp = build([a, b], intersect=True, n_boot=10)
    assert len(cmp.alignment.ids) == 39 and not cmp.alignment.same_data
    assert cmp.alignment.dropped == {"a": 1, "b": 0}
    paths = write(cmp, tmp_path / "out")
    report = paths["report"].read_text()
    assert "scored on different data files" in report and "a 1" in report


def test_missing_examples_are_named_unless_intersected(tmp_path):
    a = make_run(tmp_path, "a", set())
    b = make_run(tmp_path, "b", set(), drop={"s_a_03", "c_a_09"})
    with pytest.raises(CompareError) as e:
        build([a, b], n_boot=10)
    msg = str(e.value)
    assert "2 example(s) of run a are missing from run b" in msg and "'s_a_03'" in msg and "'c_a_09'" in msg
    assert str(b / "predictions.jsonl") in msg
    assert len(build([a, b], intersect=True, n_boot=10).alignment.ids) == 38


@pytest.mark.parametrize(("breakage", "expected"), [
    ("no_predictions", "predictions.jsonl: not found"),
    ("no_results", "results.json: not found: a run folder holds results.json and predictions.jsonl"),
    ("bad_line", "predictions.jsonl:3: invalid JSON"),
    ("missing_field", "predictions.jsonl:2: field 'json_exact': missing"),
    ("wrong_type", "predictions.jsonl:1: field 'field_f1': expected a number in [0, 1]"),
    ("duplicate", "predictions.jsonl:2: field 'id': id 's_a_00' already on line 1"),
    ("truncated", "field 'metrics.overall.n': predictions.jsonl holds 39 examples but results.json scored 40"),
    ("foreign", "field 'metrics.overall.json_exact'"),
    ("bad_results", "results.json:1: invalid JSON"),
])
def test_unreadable_runs_name_the_file_line_and_field(tmp_path, breakage, expected):
    good = make_run(tmp_path, "good", set())
    run = make_run(tmp_path, "bad", {"s_a_00"})
    preds = run / "predictions.jsonl"
    lines = preds.read_text().splitlines()
    if breakage == "no_predictions":
        preds.unlink()
    elif breakage == "no_results":
        (run / "results.json").unlink()
    elif breakage == "bad_line":
        lines[2] = lines[2][:-3]
    elif breakage == "missing_field":
        row = json.loads(lines[1]); del row["json_exact"]; lines[1] = json.dumps(row)  # noqa: E702
    elif breakage == "wrong_type":
        row = json.loads(lines[0]); row["field_f1"] = "high"; lines[0] = json.dumps(row)  # noqa: E702
    elif breakage == "duplicate":
        lines[1] = lines[0]
    elif breakage == "truncated":
        lines = lines[:-1]
    elif breakage == "foreign":
        row = json.loads(lines[0]); row["json_exact"] = False; lines[0] = json.dumps(row)  # noqa: E702
    elif breakage == "bad_results":
        (run / "results.json").write_text("{not json")
    if preds.exists():
        preds.write_text("\n".join(lines) + "\n")
    with pytest.raises(CompareError) as e:
        build([good, run], n_boot=10)
    assert expected in str(e.value)
    assert str(run) in str(e.value)


@pytest.mark.parametrize(("status", "expected"), [
    ("failed", "field 'status': the run failed (RuntimeError: out of memory)"),
    ("running", "the run is 'running', not 'completed'"),
])
def test_unfinished_runs_are_refused(tmp_path, status, expected):
    run = make_run(tmp_path, "r", set(), status=status)
    with pytest.raises(CompareError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        load_run(run)


def test_cli_flags_are_checked(tmp_path, capsys):
    a = make_run(tmp_path, "a", set())
    b = make_run(tmp_path, "b", set())
    for args, message in ((["--labels", "x"], "--labels names 1 runs but 2"),
                          (["--group", "affected"], "expected NAME=SCHEMA"),
                          (["--group", "others=s_a"], "reserved"),
                          (["--data-check", "v2"], "expected LABEL=PATH"),
                          (["--data-check", f"v2={tmp_path / 'nowhere'}"], "no such file or folder")):
        assert main([str(a), str(b), "--out", str(tmp_path / "o"), *args]) == 2
        assert message in capsys.readouterr().err
    assert main([str(a), str(a), "--out", str(tmp_path / "o")]) == 2
    assert "two runs are named 'a'" in capsys.readouterr().err


# -------------------------------------------------------------------- committed reference runs


@pytest.fixture(scope="module")
def reference_runs():
    runs = {p.name: p for p in REFERENCE.iterdir() if (p / "results.json").is_file()}
    if "smol135_gguf-none-constrained" not in runs or "smol135_gguf-full-constrained" not in runs:
        pytest.skip("committed reference runs not found")
    return runs


def test_reference_runs_compare_end_to_end(tmp_path, reference_runs, capsys):
    base, tuned = reference_runs["smol135_gguf-none-constrained"], reference_runs["smol135_gguf-full-constrained"]
    out = tmp_path / "cmp"
    assert main([str(base), str(tuned), "--labels", "base,tuned", "--group", "affected=" + ",".join(AFFECTED),
                 "--n-boot", "1000", "--out", str(out)]) == 0
    stdout = capsys.readouterr().out
    assert "tuned - base (158 examples)" in stdout
    for name in ("report.md", "tables.tex", "deltas.pdf", "deltas.png", "compare.json"):
        assert (out / name).stat().st_size > 0, name
    data = json.loads((out / "compare.json").read_text())
    # the means are results.json's own; the flips are counted here from the prediction files
    res = {k: json.loads((p / "results.json").read_text())["metrics"] for k, p in (("a", base), ("b", tuned))}
    preds = {k: {json.loads(x)["id"]: json.loads(x) for x in (p / "predictions.jsonl").read_text().splitlines()}
             for k, p in (("a", base), ("b", tuned))}
    (pair,) = data["pairs"]
    rows = {r["group"]: r for r in pair["rows"]}
    for tier in ("simple", "medium", "complex"):
        for m in ("json_exact", "field_f1", "schema_compliance"):
            got = rows[tier]["metrics"][m]
            assert got["a"] == pytest.approx(res["a"]["by_tier"][tier][m])
            assert got["b"] == pytest.approx(res["b"]["by_tier"][tier][m])
            assert got["ci"][0] <= got["delta"] <= got["ci"][1]
    gained = sorted(i for i in preds["a"] if preds["b"][i]["json_exact"] and not preds["a"][i]["json_exact"])
    lost = sorted(i for i in preds["a"] if preds["a"][i]["json_exact"] and not preds["b"][i]["json_exact"])
    assert sorted(pair["right_only_in_b"]) == gained and sorted(pair["right_only_in_a"]) == lost
    assert rows["overall"]["mcnemar"]["gained"] == len(gained) and rows["overall"]["mcnemar"]["lost"] == len(lost)
    assert rows["affected"]["n"] == 20 and rows["others"]["n"] == 138
    assert {r["group"] for r in pair["rows"] if r["kind"] == "schema"} == {p["schema_id"] for p in preds["a"].values()}
    report = (out / "report.md").read_text()
    assert "## tuned against base" in report and "group affected" in report and "deltas.png" in report
    assert all(i in report for i in gained)
    tex = (out / "tables.tex").read_text()
    # runs, the pair's summary and per-schema tables, and each run against its prompts' ceiling
    assert tex.count("\\begin{table}") == 4 and "\\_" in tex and "ceiling" in tex


def test_same_reference_run_twice_is_zero(tmp_path, reference_runs):
    run = reference_runs["smol135_gguf-full-constrained"]
    cmp = build([run, run], labels=["x", "y"], n_boot=200)
    assert all(d.delta == 0 and d.method in ("newcombe", "none") for r in cmp.pairs[0].rows for d in r.metrics.values())
    assert cmp.pairs[0].row("overall").mcnemar.p == 1.0


# ------------------------------------------------------------------------------ data checks


def test_v2_data_check_finds_the_92_records_the_validator_names(edgejson_dir):
    if not (edgejson_dir / "v2" / "train.jsonl").is_file():
        pytest.skip("EdgeJSON v2 not found")
    v2 = check_version("v2", edgejson_dir / "v2")
    v3 = check_version("v3", edgejson_dir / "v3")
    affected = set()
    for split in ("train", "test"):
        for line in (edgejson_dir / "v2" / f"{split}.jsonl").read_text().splitlines():
            r = json.loads(line)
            if r["schema_id"] in AFFECTED:
                affected.add(r["id"])
    assert len(affected) == 92
    assert v2.by_check == {"derived": 92, "prompt": 31} and set(v2.failing_ids["derived"]) == affected
    assert v2.invalid == 92 + 31 - 7  # 7 records fail both
    # v3 fails only where the gold contradicts its prompt (the LLM-edited records v2 has too)
    assert v3.invalid == 24 and v3.by_check == {"prompt": 24}
    diff = diff_versions(v2, v3)
    assert set(diff.changed_ids) == affected and diff.prompt_changed == 92
    assert diff.n_changed("train") == 72 and diff.n_changed("test") == 20
    assert sorted(diff.changed_schemas) == list(AFFECTED) and sum(diff.same.values()) == 787 - 92


def test_report_cites_the_validator_count(tmp_path, edgejson_dir, reference_runs):
    if not (edgejson_dir / "v2" / "train.jsonl").is_file():
        pytest.skip("EdgeJSON v2 not found")
    runs = [reference_runs["smol135_gguf-none-constrained"], reference_runs["smol135_gguf-full-constrained"]]
    cmp = build(runs, labels=["base", "v3"], groups={"affected": list(AFFECTED)}, n_boot=100,
                data_checks=[("v2", edgejson_dir / "v2"), ("v3", edgejson_dir / "v3")])
    report = write(cmp, tmp_path)["report"].read_text()
    assert "the validator finds **116 of 787 records invalid**" in report and "derived: 92; prompt: 31" in report
    assert "92 records changed under the same id" in report and "(the group 'affected')" in report
    assert "label quality" in report and "format" in report
    assert "v3 train.jsonl" in report  # the run's training file recognised by its sha256
    data = json.loads((tmp_path / "compare.json").read_text())["data"]
    assert len(data["checks"][0]["failing_ids"]["derived"]) == 92 and len(data["checks"][0]["failing_ids"]["prompt"]) == 31


# ------------------------------------------------------------- train v2, test v3: end to end


def test_train_on_one_version_score_on_another_end_to_end(tmp_path, run_scaling):
    """The real comparison's plumbing on tiny synthetic jobs: a base job, one trained on v1 and
    one trained on a v2 whose receipts have wrong totals, all scored on v1's test set."""
    root = tmp_path / "data"
    run_scaling("scaling.data", ["synth", "--out", str(root), "--n-train", "64", "--n-test", "16"], tmp_path)
    (root / "v2").mkdir()
    with open(root / "v2" / "train.jsonl", "w") as out:
        for line in (root / "v1" / "train.jsonl").read_text().splitlines():
            r = json.loads(line)
            if r["schema_id"] == "syn_receipt":
                r["expected_output"]["total"] = round(r["expected_output"]["total"] + 7.5, 2)
            out.write(json.dumps(r) + "\n")
    n_bad = sum(json.loads(x)["schema_id"] == "syn_receipt" for x in (root / "v2" / "train.jsonl").read_text().splitlines())
    assert n_bad > 0
    common = ["-m", "model=tiny_s", "data=synthetic", "data.synth=null", f"data.root={root}", "debug=fast",
              "decode.max_new_tokens=48", "logger=none"]
    run_scaling("scaling.train", [*common, "data.train_version=null,v2", "sweep_name=dq"], tmp_path)
    run_scaling("scaling.train", [*common, "finetune=none", "sweep_name=dqbase"], tmp_path)
    sweep = tmp_path / "multirun"
    v1_run = next((sweep / "dq").glob("*train_version=null*"))
    v2_run = next((sweep / "dq").glob("*train_version=v2*"))
    base_run = next(p for p in (sweep / "dqbase").iterdir() if p.is_dir())
    files = json.loads((v2_run / "results.json").read_text())["data"]["files"]
    assert files[str(root / "v2" / "train.jsonl")] and files[str(root / "v1" / "test.jsonl")]
    assert str(root / "v1" / "train.jsonl") not in files
    out = tmp_path / "cmp"
    proc = run_scaling("scaling.compare", [str(base_run), str(v1_run), str(v2_run), "--labels", "base,v1,v2",
                                           "--all-pairs", "--group", "receipts=syn_receipt", "--n-boot", "200",
                                           "--data-check", f"v1={root / 'v1'}", "--data-check", f"v2={root / 'v2'}",
                                           "--out", str(out)], tmp_path)
    assert "v2 - v1 (8 examples)" in proc.stdout
    data = json.loads((out / "compare.json").read_text())
    assert [(p["a"], p["b"]) for p in data["pairs"]] == [("base", "v1"), ("base", "v2"), ("v1", "v2")]
    assert [r["train_file"] and Path(r["train_file"]["path"]).parent.name for r in data["runs"]] == [None, "v1", "v2"]
    v2_check = data["data"]["checks"][1]
    assert v2_check["invalid"] == n_bad and v2_check["by_check"] == {"derived": n_bad}
    assert data["data"]["diffs"][0]["prompt_changed"] == 0
    report = (out / "report.md").read_text()
    assert f"the validator finds **{n_bad} of 64 records invalid**" in report
    assert "only the answers differ" in report
    assert "| v2 | tiny_s | full" in report and "v2 train.jsonl" in report


def test_train_version_option_keeps_existing_hashes_at_its_default(compose_train, tmp_path):
    # data.train_version came after runs existed: unset, it must not rename their results or cache.
    import copy

    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import instantiate
    from omegaconf import OmegaConf, open_dict

    from scaling.train import config_hash, train_hash

    def job(overrides):
        cfg = compose_train(overrides, hydra=True)
        with open_dict(cfg):
            cfg.hydra.runtime.output_dir = str(tmp_path)
            cfg.hydra.job.num = 0
        HydraConfig.instance().set_config(cfg)
        out = copy.deepcopy(cfg)
        with open_dict(out):
            del out["hydra"]
        OmegaConf.resolve(out)
        return out

    cfg = job(["model=tiny_s", "data=edgejson_v3"])
    before = OmegaConf.to_container(cfg)  # plain: the typed config has every key of its schema
    del before["data"]["train_version"]
    assert config_hash(cfg) == config_hash(before) and train_hash(cfg, "d") == train_hash(before, "d")
    v2 = job(["model=tiny_s", "data=edgejson_v3", "data.train_version=v2"])
    assert train_hash(v2, "d") != train_hash(cfg, "d") and config_hash(v2) != config_hash(cfg)
    assert instantiate(v2.data, _convert_="all").train_version == "v2"


def test_committed_v2_v3_comparison_is_reproduced_from_its_runs(tmp_path):
    """The committed three-way report (issue 14) follows from the committed runs: re-running
    compare on them gives the same discordant ids and the same deltas."""
    root = REPO / "outputs" / "reference" / "edgejson_v2_vs_v3"
    runs = [root / f"{k}-smol135_gguf" for k in ("base", "v2", "v3")]
    if not all((r / "results.json").is_file() for r in runs) or not (root / "compare" / "compare.json").is_file():
        pytest.skip("committed v2/v3 comparison not found")
    cmp = build(runs, labels=["base", "v2", "v3"], all_pairs=True, n_boot=200,
                groups={"affected": AFFECTED})
    committed = {(p["a"], p["b"]): p for p in json.loads((root / "compare" / "compare.json").read_text())["pairs"]}
    assert set(committed) == {(p.a, p.b) for p in cmp.pairs}
    for pair in cmp.pairs:
        ref = committed[(pair.a, pair.b)]
        assert sorted(i for i, _, _ in pair.lost) == sorted(ref["right_only_in_a"])
        assert sorted(i for i, _, _ in pair.gained) == sorted(ref["right_only_in_b"])
        ref_rows = {r["group"]: r for r in ref["rows"]}
        for row in pair.rows:
            for m, d in row.metrics.items():
                assert d.delta == pytest.approx(ref_rows[row.group]["metrics"][m]["delta"]), (pair.a, pair.b, row.group, m)
