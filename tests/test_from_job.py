"""Train once, evaluate anywhere: a finished job scored on another test set with its own config
and cached weights (``scaling.evaluate from_job=...``), never trained again; the train cache's
entries as loadable model folders; weights cached under the identity-1 train hash still found.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf, open_dict

from conftest import REPO_ROOT
from scaling.jobs.identity import data_hash, hashed_config, legacy_train_hash
from scaling.results import read_json

BASE = ["model=tiny_s", "logger=csv"]


def synth(out: Path, seed: int, n_test: int) -> Path:
    subprocess.run([sys.executable, "-m", "scaling.data", "synth", "--out", str(out), "--seed", str(seed),
                    "--n-train", "16", "--n-test", str(n_test)], check=True, capture_output=True, cwd=REPO_ROOT)
    return out / "v1" / "test.jsonl"


def rows(job: Path) -> list[dict]:
    return [json.loads(line) for line in (job / "predictions.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, run_scaling, fast_overrides):
    """One finished tiny job (its weights in the train cache) and another synthetic test set."""
    root = tmp_path_factory.mktemp("from_job")
    run_scaling("scaling.train", [*BASE, *fast_overrides, "sweep_name=src"], root)
    job = root / "runs" / "src" / "tiny_s-full-greedy-s0"
    return {"root": root, "job": job, "record": read_json(job / "results.json"),
            "other": synth(root / "other", seed=5, n_test=12)}


def test_a_finished_job_is_scored_on_another_test_set_with_its_own_config_and_weights(trained, run_scaling):
    root, src = trained["root"], trained["record"]
    args = [f"from_job={trained['job']}", f"data.test_file={trained['other']}", "sweep_name=other", "logger=csv"]
    run_scaling("scaling.evaluate", args, root)
    job = root / "runs" / "other" / src["run_name"]  # its own folder, named after the source
    r = read_json(job / "results.json")
    assert r["status"] == "completed", r.get("error")
    assert r["source_job"]["job_dir"] == str(trained["job"].resolve())
    assert r["source_job"]["train_hash"] == src["train_hash"] == r["train_hash"]
    entry = root / "trained" / src["train_hash"]
    assert r["source_job"]["weights"] == str(entry / "model.safetensors")
    assert r["train"] == {**src["train"], "reused_from": str(entry)}
    # The job's own config (model, prompt, training, decoding), the new test set.
    # What the job computes is the job's (bookkeeping, the test file and what is scored aside).
    assert hashed_config(r["config"], exclude=("data.test_file", "eval")) == \
        hashed_config(src["config"], exclude=("data.test_file", "eval"))
    assert r["config"]["data"]["prompt"] == src["config"]["data"]["prompt"]
    assert r["config"]["data"]["test_file"] == str(trained["other"])
    assert r["decode"]["max_new_tokens"] == src["decode"]["max_new_tokens"]  # debug=fast's 48, as the job's
    assert r["data"]["n_eval"] == 12 and len(rows(job)) == 12
    assert list(r["data"]["files"])[1] == str(trained["other"])
    assert r["data_hash"] != src["data_hash"] and r["config_hash"] != src["config_hash"]
    assert not (job / "checkpoints").exists()
    # Run again: completed with the same config and data, skipped.
    proc = run_scaling("scaling.evaluate", args, root)
    assert f"skip {job}" in proc.stdout + proc.stderr


def test_a_sweep_scores_several_jobs_each_in_a_folder_named_after_its_source(trained, run_scaling):
    root = trained["root"]
    base = root / "runs" / "base"
    run_scaling("scaling.evaluate", ["model=tiny_s", "data.synth.n_train=64", "data.synth.n_test=16",
                                     "eval.limit=4", "decode.max_new_tokens=16", "sweep_name=base", "logger=none"], root)
    (job_base,) = base.iterdir()
    run_scaling("scaling.evaluate", ["-m", f"from_job={trained['job']},{job_base}", f"data.test_file={trained['other']}",
                                     "eval.limit=3", "sweep_name=many", "logger=none"], root)
    sweep = root / "multirun" / "many"
    names = sorted(p.name for p in sweep.iterdir() if p.is_dir() and p.name[0].isdigit())
    assert names == [f"0_from_job={trained['job'].name},data.test_file={str(trained['other']).replace('/', '%2F')},"
                     "eval.limit=3",
                     f"1_from_job={job_base.name},data.test_file={str(trained['other']).replace('/', '%2F')},"
                     "eval.limit=3"]
    tuned, untuned = (read_json(sweep / n / "results.json") for n in names)
    assert tuned["finetune"]["method"] == "full" and tuned["train"]["reused_from"]
    assert untuned["finetune"]["method"] == "none" and untuned["train"] is None
    assert untuned["source_job"]["weights"] is None and untuned["data"]["n_eval"] == 3


def test_from_job_takes_no_optimiser_step(trained, compose_train, tmp_path, monkeypatch, fast_overrides):
    # The same job run in this process twice: as a training job (the probe counts its steps),
    # then from_job (the probe must count none).
    from hydra.core.hydra_config import HydraConfig

    from scaling.jobs.run import run_job
    from scaling.jobs.from_job import evaluation_config

    steps = {"n": 0}
    step = torch.optim.AdamW.step

    def counted(self, *args, **kwargs):
        steps["n"] += 1
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", counted)
    monkeypatch.setenv("SCALING_OUTPUT_ROOT", str(tmp_path))

    def job_config(config_name, overrides, out):
        cfg = compose_train(overrides, config_name=config_name, hydra=True)
        with open_dict(cfg):
            cfg.hydra.runtime.output_dir = str(out)
            cfg.hydra.job.num = 0
        HydraConfig.instance().set_config(cfg)
        job = copy.deepcopy(cfg)
        with open_dict(job):
            del job["hydra"]
        return job

    train_overrides = ["model=tiny_s", "logger=none", *fast_overrides]
    run_job(job_config("train", train_overrides, tmp_path / "train"), tmp_path / "train")
    assert steps["n"] == 3  # debug=fast: 3 optimiser steps, counted

    steps["n"] = 0
    overrides = [f"from_job={tmp_path / 'train'}", f"data.test_file={trained['other']}", "logger=none"]
    cfg = evaluation_config(job_config("evaluate", overrides, tmp_path / "eval"), overrides, ["decode", "model"])
    record = run_job(cfg, tmp_path / "eval")
    assert record["status"] == "completed", record.get("error")
    assert steps["n"] == 0
    assert not (tmp_path / "eval" / "checkpoints").exists()
    assert record["train"]["reused_from"] == str(tmp_path / "trained" / record["train_hash"])


def test_missing_weights_are_refused_saying_where_they_were_looked_for(trained, run_scaling, tmp_path):
    moved = tmp_path / "job"
    moved.mkdir()
    record = copy.deepcopy(trained["record"])
    record["config"]["train_cache"] = str(tmp_path / "gone")
    record["train"]["reused_from"] = str(tmp_path / "gone" / "x")
    (moved / "results.json").write_text(json.dumps(record))
    args = [f"from_job={moved}", f"data.test_file={trained['other']}", "sweep_name=gone", "logger=none"]
    proc = run_scaling("scaling.evaluate", args, tmp_path / "out", check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "failed: WeightsNotFound" in proc.stderr and "not in the train cache" in proc.stderr
    assert f"{tmp_path / 'gone'}/{record['train_hash']}" in proc.stderr and "train_cache=<folder>" in proc.stderr
    job = tmp_path / "out" / "runs" / "gone" / record["run_name"]
    assert read_json(job / "results.json")["status"] == "failed" and not (job / "predictions.jsonl").exists()

    # Not a finished job at all, or a group that would replace the job's settings: one line, no traceback.
    for bad, message in (([f"from_job={tmp_path / 'nowhere'}"], "no results.json"),
                         ([f"from_job={trained['job']}", "decode=constrained"],
                          "from_job scores the job with its own decode settings")):
        proc = run_scaling("scaling.evaluate", [*bad, "logger=none", "sweep_name=bad"], tmp_path / "out", check=False)
        assert proc.returncode == 1 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-2000:]


def test_a_cache_entry_loads_as_a_local_model(trained, run_scaling, tmp_path):
    entry = trained["root"] / "trained" / trained["record"]["train_hash"]
    assert {"config.json", "tokenizer.json", "model.safetensors", "train.json"} <= {p.name for p in entry.iterdir()}
    src = trained["record"]["config"]
    data = src["data"]
    args = ["model=tiny_s", "model.source=local", f"model.path={entry}", "model.tokenizer.kind=auto",
            f"data.synth.n_train={data['synth']['n_train']}", f"data.synth.n_test={data['synth']['n_test']}",
            f"eval.limit={src['eval']['limit']}", f"eval.train_limit={src['eval']['train_limit']}",
            f"decode.max_new_tokens={src['decode']['max_new_tokens']}", "sweep_name=local", "logger=none"]
    run_scaling("scaling.evaluate", args, trained["root"])
    (job,) = (trained["root"] / "runs" / "local").iterdir()
    assert read_json(job / "results.json")["status"] == "completed"
    assert [r["output"] for r in rows(job)] == [r["output"] for r in rows(trained["job"])]


def test_weights_cached_under_the_identity_1_hash_are_reused(trained, run_scaling, tmp_path, fast_overrides):
    # A cache written before train identity 2: the entry sits under the legacy hash.
    out = tmp_path / "out"
    shutil.copytree(trained["root"] / "data", out / "data")
    src = trained["record"]
    legacy = legacy_train_hash(src["config"], data_hash(src["data"]["files"]))
    assert legacy != src["train_hash"]
    shutil.copytree(trained["root"] / "trained" / src["train_hash"], out / "trained" / legacy)
    info = read_json(out / "trained" / legacy / "train.json")
    (out / "trained" / legacy / "train.json").write_text(json.dumps({**info, "train_hash": legacy}))
    run_scaling("scaling.train", [*BASE, *fast_overrides, "sweep_name=src"], out)
    r = read_json(out / "runs" / "src" / "tiny_s-full-greedy-s0" / "results.json")
    assert r["train_hash"] == src["train_hash"] and r["train"]["reused_from"] == str(out / "trained" / legacy)
    assert r["metrics"] == src["metrics"]
    assert sorted(p.name for p in (out / "trained").iterdir()) == [legacy]  # nothing trained, nothing stored
    assert OmegaConf.create(r["config"]).data.root.startswith(str(out))
