"""SLURM through Hydra's submitit launcher: the sbatch script the launcher configs make, and
which process of a multi-task (DDP) job is rank 0.

No cluster here: the launcher is instantiated from the composed config as Hydra does, and its
parameters go through submitit's own sbatch writer, the text ``sbatch`` would receive.
"""

from __future__ import annotations

import re

import lightning as L
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf
from submitit.slurm import slurm as submitit_slurm

from scaling.jobs.lock import RANK_VARIABLES, is_secondary_rank
from scaling.paths import CONF_DIR


def sbatch_text(compose_train, overrides, tmp_path) -> str:
    """The sbatch file submitit would submit for this sweep config."""
    cfg = compose_train(overrides, hydra=True)
    launcher = instantiate(cfg.hydra.launcher)
    assert type(launcher).__name__ == "SlurmLauncher"
    names = submitit_slurm.SlurmExecutor._equivalence_dict()
    params = {names.get(k, k): v for k, v in launcher.params.items() if k not in ("submitit_folder", "max_num_timeout")}
    if params.get("mem") is not None:
        params["mem"] = submitit_slurm._convert_mem(params["mem"])
    return submitit_slurm._make_sbatch_string(command="python -m scaling.train", folder=str(tmp_path), **params)


def sbatch_option(text: str, name: str) -> str | None:
    m = re.search(rf"^#SBATCH --{name}=(\S+)$", text, re.M)
    return m.group(1) if m else None


def test_ddp_launcher_asks_one_task_and_one_gpu_per_device(compose_train, tmp_path):
    text = sbatch_text(compose_train, ["hydra/launcher=slurm_ddp", "trainer=ddp", "trainer.devices=4",
                                       "hydra.launcher.partition=gpu"], tmp_path)
    assert sbatch_option(text, "ntasks-per-node") == "4"
    assert sbatch_option(text, "gpus-per-node") == "4"
    assert sbatch_option(text, "nodes") == "1"
    assert sbatch_option(text, "partition") == "gpu"
    two_nodes = sbatch_text(compose_train, ["hydra/launcher=slurm_ddp", "trainer=ddp", "trainer.devices=2",
                                            "trainer.num_nodes=2"], tmp_path)
    assert (sbatch_option(two_nodes, "nodes"), sbatch_option(two_nodes, "ntasks-per-node")) == ("2", "2")


def test_ddp_launcher_refuses_devices_auto_naming_the_key(compose_train, tmp_path, run_scaling):
    with pytest.raises(Exception) as err:  # Hydra wraps the resolver's ValueError
        sbatch_text(compose_train, ["hydra/launcher=slurm_ddp", "trainer=ddp"], tmp_path)
    assert "trainer.devices=<GPUs per node>" in str(err.value) and "'auto'" in str(err.value)
    # The command line: one error line before anything is submitted, no traceback.
    proc = run_scaling("scaling.train", ["-m", "hydra/launcher=slurm_ddp", "trainer=ddp", "model=tiny_s"], tmp_path,
                       check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert proc.stderr.startswith("error: hydra.launcher.") and "set trainer.devices=<GPUs per node>" in proc.stderr
    assert not (tmp_path / "multirun").exists()


def test_single_gpu_launcher_and_the_signal_its_comment_names(compose_train, tmp_path):
    text = sbatch_text(compose_train, ["hydra/launcher=slurm", "trainer=gpu"], tmp_path)
    assert sbatch_option(text, "ntasks-per-node") == "1" and sbatch_option(text, "gpus-per-node") == "1"
    signal, delay = sbatch_option(text, "signal").split("@")
    comment = (CONF_DIR / "hydra" / "launcher" / "slurm.yaml").read_text()
    assert delay == str(OmegaConf.load(CONF_DIR / "hydra" / "launcher" / "slurm.yaml").signal_delay_s)
    assert f"SIG{signal}" in comment and not re.search(rf"SIG(?!{signal})USR\d", comment)


@pytest.mark.parametrize(("env", "secondary"), [
    ({}, False),
    ({"SLURM_PROCID": "0"}, False),
    ({"SLURM_PROCID": "3"}, True),
    ({"LOCAL_RANK": "1"}, True),
    ({"NODE_RANK": "1", "SLURM_PROCID": "0"}, True),
    ({"RANK": "0", "LOCAL_RANK": "0", "SLURM_PROCID": ""}, False),
])
def test_rank_detection_reads_slurm_procid(env, secondary, monkeypatch):
    for var in RANK_VARIABLES:
        monkeypatch.delenv(var, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert is_secondary_rank() is secondary


@pytest.mark.parametrize("procid", [0, 1])
def test_lightning_and_the_job_lock_agree_on_rank_zero_under_slurm(procid, monkeypatch):
    # Two tasks on one node, as slurm_ddp with trainer.devices=2 starts them.
    for var in RANK_VARIABLES:
        monkeypatch.delenv(var, raising=False)
    slurm = {"SLURM_NTASKS": "2", "SLURM_NTASKS_PER_NODE": "2", "SLURM_PROCID": str(procid),
             "SLURM_LOCALID": str(procid), "SLURM_NODEID": "0", "SLURM_JOB_NAME": "train", "SLURM_NODELIST": "node1",
             "SLURM_JOB_ID": "7"}
    for key, value in slurm.items():
        monkeypatch.setenv(key, value)
    trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp", num_nodes=1, logger=False,
                        enable_progress_bar=False, enable_model_summary=False)
    assert type(trainer.strategy.cluster_environment).__name__ == "SLURMEnvironment"
    assert trainer.world_size == 2 and trainer.global_rank == procid
    assert is_secondary_rank() is (trainer.global_rank != 0)
