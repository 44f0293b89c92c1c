"""Tests for scaling.data.synthetic: the synthetic EdgeJSON-format generator."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from collections import Counter
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from statistics import mean

import jsonschema
import pytest

from scaling.data.derived import check_derived
from scaling.data.io import TIERS, load_dataset
from scaling.data.synthetic import SCHEMAS, generate

N_TRAIN, N_TEST = 240, 120  # 20 train / 10 test per schema: seconds to generate and check
CENT = Decimal("0.01")


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("syn"), seed=0, n_train=N_TRAIN, n_test=N_TEST)


def _records(root: Path, split: str) -> list[dict]:
    return [json.loads(line) for line in (root / "v1" / f"{split}.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def records(root) -> dict[str, list[dict]]:
    return {split: _records(root, split) for split in ("train", "test")}


def _all(records) -> list[dict]:
    return records["train"] + records["test"]


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _env() -> dict[str, str]:
    src = str(Path(__file__).resolve().parents[1] / "src")
    return {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", ""),
            "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}


# ------------------------------------------------------------------------------- layout


def test_layout_and_counts(root, records):
    assert sorted(_files(root)) == sorted(
        ["v1/train.jsonl", "v1/test.jsonl"]
        + [f"schemas/{e.tier}/{e.schema_id}.json" for e in SCHEMAS.values()]
    )
    per_tier = Counter(e.tier for e in SCHEMAS.values())
    assert set(per_tier) == set(TIERS) and min(per_tier.values()) >= 4
    for split, n in (("train", N_TRAIN), ("test", N_TEST)):
        recs = records[split]
        assert len(recs) == n
        assert all(list(r) == ["id", "schema_id", "complexity", "prompt", "expected_output"]
                   for r in recs)
        assert all(r["complexity"] == SCHEMAS[r["schema_id"]].tier for r in recs)
        assert set(Counter(r["schema_id"] for r in recs).values()) == {n // len(SCHEMAS)}
    ids = [r["id"] for r in _all(records)]
    assert len(set(ids)) == len(ids)


def test_uneven_sizes_spread_over_schemas_and_tiers(tmp_path):
    generate(tmp_path, seed=3, n_train=14, n_test=2)
    train = _records(tmp_path, "train")
    per_schema = Counter(r["schema_id"] for r in train)
    assert len(train) == 14 and set(per_schema.values()) == {1, 2} and len(per_schema) == 12
    per_tier = Counter(r["complexity"] for r in train)
    assert max(per_tier.values()) - min(per_tier.values()) <= 1
    assert len({r["complexity"] for r in _records(tmp_path, "test")}) == 2  # not both simple


def test_data_layer_reads_it(root):
    ds = load_dataset(root, version="v1", name="synthetic")
    assert set(ds.schemas) == set(SCHEMAS)
    assert (len(ds.train), len(ds.test)) == (N_TRAIN, N_TEST)
    assert all(r.tier == SCHEMAS[r.schema_id].tier for r in ds.train + ds.test)


@pytest.mark.parametrize("bad", [dict(n_train=-1), dict(n_test=1.5), dict(version="a/b"),
                                 dict(version=".."), dict(seed="0")])
def test_bad_arguments_are_rejected(tmp_path, bad):
    with pytest.raises(ValueError):
        generate(tmp_path, **bad)
    assert not any(tmp_path.iterdir())


# ------------------------------------------------------------------------------- content


def test_outputs_validate_against_written_schemas(root, records):
    for entry in SCHEMAS.values():
        schema = json.loads((root / "schemas" / entry.tier / f"{entry.schema_id}.json").read_text())
        assert schema == entry.schema
        jsonschema.Draft7Validator.check_schema(schema)
    checker = jsonschema.Draft7Validator.FORMAT_CHECKER
    for r in _all(records):
        schema = SCHEMAS[r["schema_id"]].schema
        jsonschema.Draft7Validator(schema, format_checker=checker).validate(r["expected_output"])


def _d(x) -> Decimal:
    return Decimal(json.dumps(x))


def _r2(x: Decimal) -> Decimal:
    return x.quantize(CENT, rounding=ROUND_HALF_UP)


def _group_sums(obj, outer, inner, leaf, group_total, total):
    for g in obj[outer]:
        assert _d(g[group_total]) == sum(_d(x[leaf]) for x in g[inner])
    assert _d(obj[total]) == sum(_d(g[group_total]) for g in obj[outer])


def _expected_arithmetic(schema_id: str, o: dict) -> None:
    """Independent exact (decimal) recomputation of every derived field."""
    if schema_id == "syn_receipt":
        for item in o["items"]:
            assert _d(item["total"]) == _r2(item["qty"] * _d(item["unit_price"]))
        assert _d(o["subtotal"]) == sum(_d(i["total"]) for i in o["items"])
        assert _d(o["tax"]) == _r2(_d(o["subtotal"]) * o["tax_rate"] / 100)
        assert _d(o["total"]) == _d(o["subtotal"]) + _d(o["tax"])
    elif schema_id == "syn_order":
        assert o["total_qty"] == sum(ln["qty"] for ln in o["lines"])
    elif schema_id == "syn_timesheet":
        assert _d(o["total_hours"]) == sum(_d(e["hours"]) for e in o["entries"])
    elif schema_id == "syn_gradebook":
        scores = [g["score"] for g in o["grades"]]
        assert _d(o["average"]) == _r2(Decimal(sum(scores)) / len(scores))
        assert o["highest"] == max(scores)
    elif schema_id == "syn_warehouse":
        _group_sums(o, "shelves", "bins", "count", "shelf_total", "total_items")
    elif schema_id == "syn_project":
        _group_sums(o, "teams", "tasks", "hours", "team_hours", "total_hours")
    elif schema_id == "syn_budget":
        _group_sums(o, "groups", "lines", "amount", "group_total", "total")
    elif schema_id == "syn_tournament":
        matches = [m for r in o["rounds"] for m in r["matches"]]
        for m in matches:
            assert m["home_score"] != m["away_score"]
            assert m["winner"] == (m["home"] if m["home_score"] > m["away_score"] else m["away"])
        assert o["total_goals"] == sum(m["home_score"] + m["away_score"] for m in matches)
    else:
        assert not SCHEMAS[schema_id].derived, f"no arithmetic test for {schema_id}"


def test_derived_fields_are_exact(records):
    for r in _all(records):
        _expected_arithmetic(r["schema_id"], r["expected_output"])


def test_registered_checks_pass_good_and_catch_bad_records(records):
    with_derived = [e.schema_id for e in SCHEMAS.values() if e.derived]
    assert len(with_derived) == 8
    for r in _all(records):
        assert check_derived(r["schema_id"], r["expected_output"]) == []
    # Break the last derived field of one record per schema: the check must see it.
    for schema_id in with_derived:
        o = copy.deepcopy(next(r["expected_output"] for r in records["train"]
                               if r["schema_id"] == schema_id))
        key = SCHEMAS[schema_id].derived[-1]
        o[key] = o[key] + 1
        problems = check_derived(schema_id, o)
        assert len(problems) == 1 and problems[0].startswith(f"{key}: expected"), problems


def test_checks_catch_nested_errors_and_survive_malformed_objects(records):
    receipt = copy.deepcopy(next(r["expected_output"] for r in records["train"]
                                 if r["schema_id"] == "syn_receipt"))
    receipt["items"][0]["total"] += 0.01
    assert any(p.startswith("items[0].total: expected") for p in check_derived("syn_receipt", receipt))
    match = copy.deepcopy(next(r["expected_output"] for r in records["train"]
                               if r["schema_id"] == "syn_tournament"))
    m = match["rounds"][0]["matches"][0]
    right, wrong = m["winner"], m["home"] if m["winner"] == m["away"] else m["away"]
    m["winner"] = wrong
    assert check_derived("syn_tournament", match) == [
        f"rounds[0].matches[0].winner: expected {right!r} (the side with more goals), "
        f"found {wrong!r}"]
    for schema_id in SCHEMAS:
        for junk in (None, [], "x", {}, {"items": [1, None]}, {"shelves": [{"bins": "no"}]},
                     {"total": "1", "groups": [{"lines": [{"amount": True}]}]}):
            assert check_derived(schema_id, junk) == []


def _leaves(obj, path=""):
    """(path, value) for every string/number leaf; array indices written as ``[]``."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _leaves(v, f"{path}.{k}" if path else k)
    elif isinstance(obj, list):
        for v in obj:
            yield from _leaves(v, f"{path}[]")
    else:
        yield path, obj


def test_every_copied_value_appears_in_the_prompt(records):
    checked = 0
    for r in _all(records):
        derived = set(SCHEMAS[r["schema_id"]].derived)
        paths = {p for p, _ in _leaves(r["expected_output"])}
        assert derived <= paths, f"{r['schema_id']}: derived paths {derived - paths} not in output"
        for path, value in _leaves(r["expected_output"]):
            if path in derived:
                continue
            assert isinstance(value, (str, int, float)) and not isinstance(value, bool)
            text = value if isinstance(value, str) else json.dumps(value)
            # A number must stand alone (not be part of 12.5 or A1234) and look as JSON writes it.
            pattern = re.escape(text) if isinstance(value, str) else \
                rf"(?<![\w.]){re.escape(text)}(?![\w]|\.\d)"
            assert re.search(pattern, r["prompt"]), f"{r['id']}: {path}={text!r} not in prompt"
            checked += 1
    assert checked > 10 * len(_all(records))


def test_prompt_layouts_vary_per_schema(records):
    for schema_id in SCHEMAS:
        prompts = [r["prompt"] for r in records["train"] if r["schema_id"] == schema_id]
        layouts = {("table" if p.count("|") >= 4 else "lines" if p.count("\n") >= 3 else "text")
                   for p in prompts}
        assert len(layouts) >= 2, f"{schema_id}: one layout only ({layouts})"


def test_lengths_per_tier_are_bounded(records):
    """Mean prompt + compact-JSON output length in characters (measured at seed 0: simple
    ~195, medium ~370, complex ~610), bounded so tiny models stay in a few hundred tokens."""
    bounds = {"simple": (120, 260), "medium": (260, 500), "complex": (420, 850)}
    for tier, (low, high) in bounds.items():
        lengths = [len(r["prompt"]) + len(json.dumps(r["expected_output"], separators=(",", ":")))
                   for r in _all(records) if r["complexity"] == tier]
        assert low <= mean(lengths) <= high, (tier, mean(lengths))
        assert max(lengths) <= 3 * high


# ------------------------------------------------------------------------------- determinism


def test_same_seed_gives_identical_bytes_other_seed_differs(tmp_path, root):
    again = generate(tmp_path / "a", seed=0, n_train=N_TRAIN, n_test=N_TEST)
    assert _files(again) == _files(root)
    other = _files(generate(tmp_path / "b", seed=1, n_train=N_TRAIN, n_test=N_TEST))
    assert other["v1/train.jsonl"] != _files(root)["v1/train.jsonl"]
    assert other["schemas/simple/syn_contact.json"] == _files(root)["schemas/simple/syn_contact.json"]


def test_train_and_test_are_disjoint(records):
    def key(r):
        return json.dumps(r["expected_output"], sort_keys=True)
    for field in ("prompt", key):
        get = (lambda r: r[field]) if isinstance(field, str) else field
        train = [get(r) for r in records["train"]]
        test = [get(r) for r in records["test"]]
        assert len(set(train)) == len(train) and len(set(test)) == len(test)
        assert not set(train) & set(test)


# ------------------------------------------------------------------------------- CLI


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scaling.data", *args], capture_output=True,
                          text=True, env=_env(), timeout=60)


def test_cli_round_trip_validates_clean(tmp_path, root):
    out = tmp_path / "cli"
    run = _cli("synth", "--out", str(out), "--seed", "0", "--n-train", str(N_TRAIN),
               "--n-test", str(N_TEST))
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout.strip().splitlines()[-1])
    assert summary == {"root": str(out), "version": "v1", "train": N_TRAIN, "test": N_TEST,
                       "schemas": len(SCHEMAS)}
    assert _files(out) == _files(root)  # the CLI is the API
    run = _cli("validate", str(out / "v1/train.jsonl"), str(out / "v1/test.jsonl"),
               "--schemas", str(out / "schemas"), "--check-formats", "--json")
    assert run.returncode == 0, run.stdout[-2000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["records"] == N_TRAIN + N_TEST and report["invalid"] == 0
    assert report["overlap_checked"] and not any(report["by_check"].values())


def test_cli_validate_runs_synthetic_derived_checks(tmp_path, root):
    """The derived checks are live in `validate`: a broken total is reported."""
    lines = (root / "v1" / "test.jsonl").read_text().splitlines()
    n = next(i for i, line in enumerate(lines) if '"syn_warehouse"' in line)
    rec = json.loads(lines[n])
    rec["expected_output"]["total_items"] += 5
    lines[n] = json.dumps(rec)
    bad = tmp_path / "test.jsonl"
    bad.write_text("\n".join(lines) + "\n")
    run = _cli("validate", str(bad), "--schemas", str(root / "schemas"), "--json")
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert run.returncode == 1
    assert report["invalid"] == 1 and report["by_check"]["derived"] == 1
    assert report["failures"][0]["line"] == n + 1


def test_validation_knows_the_synthetic_checks_whatever_was_imported(tmp_path, records, root):
    """What validation checks does not depend on import order: a process that imports only the
    validator, never the generator, knows every synthetic schema's derived-field check and
    reports a broken total in each."""
    with_derived = sorted(e.schema_id for e in SCHEMAS.values() if e.derived)
    broken = []
    for schema_id in with_derived:
        rec = copy.deepcopy(next(r for r in records["test"] if r["schema_id"] == schema_id))
        key = SCHEMAS[schema_id].derived[-1]
        rec["expected_output"][key] += 1
        broken.append(json.dumps(rec))
    bad = tmp_path / "test.jsonl"
    bad.write_text("\n".join(broken) + "\n")
    code = (
        "import json, sys\n"
        "from scaling.data.validate import validate_files\n"
        "from scaling.data.derived import DERIVED_CHECKS\n"
        f"report = validate_files([{str(bad)!r}], {str(root / 'schemas')!r}).to_dict()\n"
        "print(json.dumps({'checks': sorted(DERIVED_CHECKS), 'derived': report['by_check']['derived'],\n"
        "                  'generator': sorted(m for m in sys.modules if m.startswith('scaling.data.synthetic'))}))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=60)
    assert run.returncode == 0, run.stderr
    seen = json.loads(run.stdout.strip().splitlines()[-1])
    assert seen["generator"] == []  # the validator alone, as the test means
    assert set(with_derived) <= set(seen["checks"])
    assert seen["derived"] == len(with_derived)


def test_cli_bad_input_is_an_error_not_a_traceback(tmp_path):
    run = _cli("synth", "--out", str(tmp_path), "--n-train", "-3")
    assert run.returncode == 2
    assert run.stderr.startswith("error: ") and "n_train" in run.stderr
    assert "Traceback" not in run.stderr
    blocker = tmp_path / "file"
    blocker.write_text("")
    run = _cli("synth", "--out", str(blocker), "--n-train", "2", "--n-test", "0")
    assert run.returncode == 2 and run.stderr.startswith("error: ") and "Traceback" not in run.stderr


def test_one_set_of_default_sizes():
    """The generator's defaults (CLI, ensure_synthetic) are the ones the data group composes."""
    import yaml

    from scaling.data.synthetic import DEFAULT_N_TEST, DEFAULT_N_TRAIN
    from scaling.paths import conf_dir

    synth = yaml.safe_load((conf_dir() / "data" / "synthetic.yaml").read_text())["synth"]
    assert (synth["n_train"], synth["n_test"]) == (DEFAULT_N_TRAIN, DEFAULT_N_TEST)


def test_ensure_synthetic_takes_the_generator_defaults(tmp_path, monkeypatch):
    import scaling.data.synthetic as synthetic
    from scaling.data.source import ensure_synthetic

    seen = {}

    def fake_generate(out, seed, version, **sizes):  # records what it was asked for, writes the layout
        seen.update(sizes, seed=seed)
        (Path(out) / version).mkdir(parents=True)
        for split in ("train", "test"):
            (Path(out) / version / f"{split}.jsonl").write_text("")
        return Path(out)

    monkeypatch.setattr(synthetic, "generate", fake_generate)
    ensure_synthetic(tmp_path / "a", seed=3)
    assert seen == {"seed": 3}  # no sizes passed: generate's own defaults apply
    ensure_synthetic(tmp_path / "b", n_train=8, n_test=4)
    assert seen == {"seed": 0, "n_train": 8, "n_test": 4}
