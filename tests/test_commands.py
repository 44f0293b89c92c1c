"""The console scripts of pyproject.toml and Hydra's tab completion through them.

The scripts are the ones ``pip install -e .`` writes into ``.venv/bin``. When this
interpreter's environment does not have them (an install older than the scripts), the test
writes the same wrapper pip writes (``sys.exit(<module>.<func>())``) from pyproject.toml's
``[project.scripts]``, so what is checked is the declared entry point either way.
"""

from __future__ import annotations

import importlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from scaling.paths import CONF_DIR

REPO = Path(__file__).resolve().parents[1]


def _scripts() -> dict[str, str]:
    """pyproject.toml's ``[project.scripts]``."""
    text = (REPO / "pyproject.toml").read_text()
    try:
        import tomllib  # Python >= 3.11
    except ModuleNotFoundError:  # 3.10: the section's `name = "module:func"` lines
        section = text.split("[project.scripts]", 1)[1].split("\n[", 1)[0]
        return dict(re.findall(r'^([\w-]+)\s*=\s*"([^"]+)"', section, re.M))
    return tomllib.loads(text)["project"]["scripts"]


SCRIPTS = _scripts()


@pytest.fixture(scope="module")
def script_bin(tmp_path_factory) -> Path:
    """A folder holding every console script: the installed ones where they exist beside this
    interpreter, else pip's wrapper written from pyproject.toml."""
    out = tmp_path_factory.mktemp("bin")
    installed = Path(sys.executable).parent
    for name, target in SCRIPTS.items():
        module, func = target.split(":")
        if (installed / name).is_file():
            (out / name).symlink_to(installed / name)
            continue
        (out / name).write_text(f"#!{sys.executable}\nimport sys\nfrom {module} import {func}\n"
                                f"if __name__ == '__main__':\n    sys.exit({func}())\n")
        (out / name).chmod(0o755)
    return out


def _env(script_bin: Path) -> dict[str, str]:
    env = dict(os.environ, PATH=f"{script_bin}{os.pathsep}{os.environ.get('PATH', '')}", HYDRA_FULL_ERROR="1")
    src = str(REPO / "src")  # this checkout's code first, as in the tests' own interpreter
    env["PYTHONPATH"] = os.pathsep.join([src, *filter(None, [os.environ.get("PYTHONPATH")])])
    return env


def test_every_python_m_command_of_the_readme_has_a_console_script():
    readme = (REPO / "README.md").read_text()
    modules = set(re.findall(r"python -m (scaling(?:\.\w+)+)", readme))
    assert modules, "the README names no python -m command"
    declared = {target.split(":")[0].removesuffix(".__main__") for target in SCRIPTS.values()}
    assert modules <= declared, f"no console script for {sorted(modules - declared)}"
    for name, target in SCRIPTS.items():
        module, func = target.split(":")
        assert name == "scaling-" + module.removeprefix("scaling.").removesuffix(".__main__")
        assert callable(getattr(importlib.import_module(module), func)), target
        assert f"`{name}`" in readme or f"{name} " in readme, f"the README never shows {name}"


@pytest.mark.parametrize("name", ["scaling-train", "scaling-fit", "scaling-score", "scaling-data"])
def test_console_scripts_run_from_any_folder(name, script_bin, tmp_path):
    proc = subprocess.run([name, "--help"], cwd=tmp_path, env=_env(script_bin), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "usage" in proc.stdout.lower() or "powered by hydra" in proc.stdout.lower(), proc.stdout[:500]


def _complete(script_bin: Path, line: str, cwd: Path) -> list[str]:
    """Hydra's bash completion as bash runs it: the script ``scaling-train -sc install=bash``
    prints is eval'ed, then its function is called with bash's completion variables."""
    words = line.split(" ")
    script = ('eval "$(scaling-train -sc install=bash)"\n'
              f'COMP_LINE={line!r}; COMP_POINT=${{#COMP_LINE}}\n'
              f'COMP_WORDS=({" ".join(repr(w) for w in words)}); COMP_CWORD={len(words) - 1}\n'
              'hydra_bash_completion\nprintf "%s\\n" "${COMPREPLY[@]}"\n')
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash on this machine")
    proc = subprocess.run([bash, "--norc", "-c", script], cwd=cwd, env=_env(script_bin), capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [w for w in proc.stdout.split() if w]


def test_tab_completion_completes_model_with_the_model_configs(script_bin, tmp_path):
    models = sorted(p.stem for p in (CONF_DIR / "model").glob("*.yaml"))
    assert "tiny_s" in models and "smol135_gguf" in models
    assert sorted(_complete(script_bin, "scaling-train model=", tmp_path)) == [f"model={m}" for m in models]
    assert _complete(script_bin, "scaling-train model=smol135_gguf_d", tmp_path) == [
        f"model={m}" for m in models if m.startswith("smol135_gguf_d")]
    groups = _complete(script_bin, "scaling-train fine", tmp_path)
    assert "finetune=" in groups
