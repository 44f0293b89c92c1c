"""Typed configs: the dataclasses are the config tree's schema (scaling.jobs.config).

A wrong type or a misspelt key fails when Hydra composes, naming the full key, before any data
or model is loaded; an error while a config becomes its object keeps the key too.
"""

from __future__ import annotations

import dataclasses

import pytest
from omegaconf import OmegaConf

from scaling.typed_config import ConfigError, instantiate_node, structured_schema
from scaling.data.prompts import PromptFormat
from scaling.data.source import DataSpec
from scaling.decode.config import DecodeConfig
from scaling.jobs.config import EvalConfig, FinetuneConfig, LockConfig, TrainConfig, schemas
from scaling.models.spec import ModelSpec
from scaling.optim import OptimConfig
from scaling.paths import CONF_DIR

TYPED = {"model": ModelSpec, "data": DataSpec, "finetune": FinetuneConfig, "decode": DecodeConfig, "eval": EvalConfig,
         "lock": LockConfig}


def fields(cls) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def test_the_schema_is_the_dataclasses():
    # One description of every setting: the schema has exactly the classes' fields and defaults.
    train = OmegaConf.structured(schemas()["train"])
    assert set(train) == set(fields(TrainConfig))
    for group, cls in TYPED.items():
        node = train[group]
        assert [k for k in node if k != "_target_"] == fields(cls), group
        for f in dataclasses.fields(cls):
            if f.default is not dataclasses.MISSING and f.name not in ("prompt", "optim"):
                expected = list(f.default) if isinstance(f.default, tuple) else f.default
                assert OmegaConf.to_container(node)[f.name] == expected, f"{group}.{f.name}"
    assert list(train.data.prompt) == fields(PromptFormat) and list(train.finetune.optim) == fields(OptimConfig)
    assert set(OmegaConf.structured(schemas()["evaluate"])) == set(fields(TrainConfig)) | {"from_job"}


@pytest.mark.parametrize("group", ["model", "data", "finetune", "decode"])
def test_every_option_composes_to_its_typed_group(group, compose_train):
    for path in sorted((CONF_DIR / group).glob("*.yaml")):
        cfg = compose_train([f"{group}={path.stem}"])
        assert OmegaConf.get_type(cfg[group]).__name__ == f"{TYPED[group].__name__}Schema", path.name
        assert OmegaConf.is_missing(cfg.model, "key") is False


@pytest.mark.parametrize(("override", "key", "why"), [
    ("finetune.epochs=abc", "finetune.epochs", "could not be converted to Integer"),
    ("finetune.batch_size=abc", "finetune.batch_size", "could not be converted to Integer"),
    ("decode.max_new_tokens=lots", "decode.max_new_tokens", "could not be converted to Integer"),
    ("finetune.optim.lr=fast", "finetune.optim.lr", "could not be converted to Float"),
    ("eval.limit=all", "eval.limit", "could not be converted to Integer"),
    ("seed=first", "seed", "could not be converted to Integer"),
    ("finetune.epoch=3", "finetune.epoch", "Key 'epoch' not in"),
    ("model.hidden=3", "model.hidden", "Key 'hidden' not in"),
])
def test_a_wrong_type_or_an_unknown_key_fails_at_compose_time_naming_the_key(override, key, why, run_scaling,
                                                                            tmp_path):
    for args in (["--cfg", "job", override], [override, "logger=none"]):
        proc = run_scaling("scaling.train", args, tmp_path, check=False, timeout=120, HYDRA_FULL_ERROR="0")
        assert proc.returncode != 0, args
        assert f"full_key: {key}\n" in proc.stderr and why in proc.stderr, proc.stderr[-2000:]
        assert "Traceback" not in proc.stderr
    assert not tmp_path.exists() or not any(tmp_path.iterdir())  # no data, no job folder: nothing ran


def test_a_key_added_with_plus_that_the_schema_does_not_know_stops_the_job(run_scaling, tmp_path, fast_overrides):
    # Hydra lets `+key=value` into a typed node; the job refuses it before anything is loaded.
    proc = run_scaling("scaling.train", ["+finetune.epoch=3", *fast_overrides, "logger=none", "sweep_name=plus"],
                       tmp_path, check=False, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "error: finetune.epoch: Key 'epoch' not in 'FinetuneConfigSchema'" in proc.stderr
    assert not (tmp_path / "data").exists() and not (tmp_path / "runs" / "plus" / "tiny_s-full-greedy-s0" /
                                                     "results.json").exists()
    # A key the schema leaves open (callbacks are any mapping) is still added.
    ok = run_scaling("scaling.train", ["+callbacks.extra=null", "--cfg", "job"], tmp_path, timeout=120)
    assert "extra: null" in ok.stdout


def test_an_instantiation_error_keeps_the_key(compose_train):
    cfg = compose_train(["model=tiny_s", "model._target_=scaling.data.source.DataSpec"])
    with pytest.raises(ConfigError, match=r"^model: TypeError: .*unexpected keyword argument 'key'"):
        instantiate_node(cfg.model)
    # A class's own message that names the key is raised as it is.
    cfg = compose_train(["finetune.method=bogus"])
    with pytest.raises(ValueError, match=r"^finetune\.method='bogus': expected full, lora or none$"):
        instantiate_node(cfg.finetune)


def test_an_instantiation_error_fails_the_job_naming_the_key_before_data(run_scaling, tmp_path, fast_overrides):
    proc = run_scaling("scaling.train", ["model._target_=scaling.data.source.DataSpec", *fast_overrides,
                                         "logger=none", "sweep_name=inst"], tmp_path, check=False, timeout=120)
    assert proc.returncode == 1
    assert "failed: ConfigError: model: TypeError: DataSpec.__init__() got an unexpected keyword argument" \
        in proc.stderr, proc.stderr[-2000:]
    assert not (tmp_path / "data").exists()  # the synthetic data was never generated


def test_structured_schema_types():
    @dataclasses.dataclass(frozen=True)
    class Example:
        name: str
        sizes: tuple[int, ...] = (1, 2)
        extra: dict | None = None
        counts: dict[str, int] = dataclasses.field(default_factory=dict)
        ratio: float | None = 0.5

    node = OmegaConf.structured(structured_schema(Example, target="pkg.Example"))
    assert node._target_ == "pkg.Example" and OmegaConf.is_missing(node, "name")
    assert list(node.sizes) == [1, 2]
    node.extra = {"any": ["thing"]}  # a mapping that may be null is open (OmegaConf cannot merge into it typed)
    node.ratio = None
    with pytest.raises(Exception, match="could not be converted to Integer"):
        node.counts = {"a": "b"}
    with pytest.raises(Exception, match="could not be converted to Float"):
        node.ratio = "half"


def test_a_typed_config_pickles_into_another_process(compose_train, tmp_path):
    # The parallel (joblib) and submitit launchers send each job's config to another process.
    import pickle
    import subprocess
    import sys

    from conftest import REPO_ROOT

    cfg = compose_train(["finetune.tier_repeat={complex:2}", "model=tiny_m"])
    (tmp_path / "cfg.pkl").write_bytes(pickle.dumps(cfg))
    code = ("import pickle, sys; from omegaconf import OmegaConf; c = pickle.load(open(sys.argv[1], 'rb')); "
            "print(OmegaConf.get_type(c.finetune).__name__, c.model.key, dict(c.finetune.tier_repeat))")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "cfg.pkl")], capture_output=True, text=True,
                         cwd=REPO_ROOT, check=True).stdout
    assert out.split() == ["FinetuneConfigSchema", "tiny_m", "{'complex':", "2}"]


def test_every_setting_has_one_description_its_field_docstring():
    # The docstring under each field is the only description of a setting: --help prints it.
    from scaling.jobs.config import GROUP_CLASSES, JOB_CLASSES
    from scaling.typed_config import field_docs

    assert field_docs(FinetuneConfig)["epochs"] == "Passes over the training split (at least 1 unless ``method`` is ``none``)."
    evaluate_docs = field_docs(JOB_CLASSES["evaluate"])
    assert "from_job" in evaluate_docs and evaluate_docs["seed"] == field_docs(TrainConfig)["seed"]  # inherited
    for key, cls in {**GROUP_CLASSES, **JOB_CLASSES}.items():
        undocumented = [f for f in fields(cls) if f not in field_docs(cls)]
        assert not undocumented, f"{key}: fields without a docstring {undocumented}"


def test_help_lists_every_typed_key_with_its_type_default_and_doc(run_scaling, tmp_path):
    from scaling.jobs.config import GROUP_CLASSES, settings_help

    text = settings_help("train")
    for key, cls in GROUP_CLASSES.items():
        nested = {k.rsplit(".", 1)[-1] for k in GROUP_CLASSES if k.startswith(key + ".")}
        for name in set(fields(cls)) - nested:
            assert f"\n  {key}.{name}: " in text, f"{key}.{name}"
    assert "  from_job:" not in text and "  from_job: str | None = null" in settings_help("evaluate")

    proc = run_scaling("scaling.train", ["--help"], tmp_path, timeout=120)
    assert "  finetune.epochs: int = 1\n      Passes over the training split (at least 1 unless method is none)." \
        in proc.stdout
    # '$' in a default survives Hydra's string.Template; the composed config follows the settings
    assert "  sweep_name: str = ${oc.env:WANDB_SWEEP_ID," in proc.stdout
    assert proc.stdout.index("== Settings ==") < proc.stdout.index("== Config ==")
