"""notebooks/scaling_study.ipynb runs top to bottom with ``jupyter execute``, as a user runs it by
hand: from the repository root and from notebooks/, on the newest sweep or, in a fresh clone, on
the committed reference ladder, writing into the project's outputs/fit/."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager

from scaling.fit import REFERENCE_LADDER, synthetic

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "scaling_study.ipynb"


def _runs_this_python(argv0: str) -> bool:
    # jupyter_client replaces a bare "python"/"python3"/"python3.X" with sys.executable
    bare = {"python", f"python{sys.version_info[0]}", "python%d.%d" % sys.version_info[:2]}
    return argv0 in bare or Path(argv0).resolve() == Path(sys.executable).resolve()


@pytest.fixture
def venv_python3_kernel(tmp_path, monkeypatch) -> str:
    """Make kernel ``python3`` resolve to this interpreter (the venv's). When the one Jupyter
    finds points elsewhere (a user-level spec for the system python), a spec for
    ``sys.executable`` is put first on JUPYTER_PATH for this test only."""
    spec = KernelSpecManager().get_kernel_spec("python3")
    if not _runs_this_python(spec.argv[0]):
        kdir = tmp_path / "jupyter" / "kernels" / "python3"
        kdir.mkdir(parents=True)
        (kdir / "kernel.json").write_text(json.dumps({
            "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "Python 3 (venv)", "language": "python"}))
        monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
        spec = KernelSpecManager().get_kernel_spec("python3")
    assert _runs_this_python(spec.argv[0]), spec.argv
    return "python3"


def _clone(tmp_path: Path) -> Path:
    """What a fresh clone holds that the notebook reads: conf/ and notebooks/ (copied) and the
    committed reference ladder (linked: read only). ``SCALING_CONF_DIR`` points the package at
    this conf/, so this folder is the project root the notebook's paths are relative to."""
    root = tmp_path / "clone"
    shutil.copytree(REPO / "conf", root / "conf")
    (root / "notebooks").mkdir(parents=True)
    shutil.copy(NOTEBOOK, root / "notebooks" / NOTEBOOK.name)
    ladder = root / REFERENCE_LADDER
    ladder.parent.mkdir(parents=True)
    ladder.symlink_to(REPO / REFERENCE_LADDER, target_is_directory=True)
    return root


def _jupyter_execute(root: Path, cwd: Path, notebook: str) -> nbformat.NotebookNode:
    """``jupyter execute <notebook>`` run by hand in ``cwd``; returns the executed notebook."""
    env = {k: v for k, v in os.environ.items() if k not in ("SCALING_OUTPUT_ROOT", "SCALING_SWEEP_DIR")}
    env.update(SCALING_CONF_DIR=str(root / "conf"), SCALING_FIT_OVERRIDES="n_boot=100 n_boot_fit=5", MPLBACKEND="Agg",
               PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH")])))
    proc = subprocess.run([sys.executable, "-m", "jupyter", "execute", "--output=executed", notebook], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return nbformat.read(root / "notebooks" / "executed.ipynb", as_version=4)


def _outputs(nb) -> tuple[str, list, str]:
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    pngs = [o for o in outputs if o.output_type == "display_data" and "image/png" in o.get("data", {})]
    markdown = "".join(o["data"].get("text/markdown", "") for o in outputs if o.output_type == "display_data")
    return text, pngs, markdown


def test_notebook_in_a_fresh_clone_fits_the_reference_ladder_from_the_repo_root(tmp_path, venv_python3_kernel):
    root = _clone(tmp_path)
    nb = _jupyter_execute(root, cwd=root, notebook="notebooks/scaling_study.ipynb")
    text, pngs, markdown = _outputs(nb)
    assert f"prefix: {sys.prefix}" in text            # the kernel ran the venv's python
    out = root / "outputs" / "fit" / REFERENCE_LADDER.name
    assert f"wrote {out}/" in text
    doc = json.loads((out / "fit.json").read_text())
    assert doc["headline"]["series"] == "fine-tuned (full), records 100%"  # the depth ladder's rungs
    assert len(doc["gain_per_100m"][doc["headline"]["series"]]["json_exact"]["overall"]) == 3
    assert len(pngs) == len(list((out / "figures").glob("*.png"))) > 0
    assert "Track 1" in markdown
    assert not (root / "notebooks" / "outputs").exists()


def test_notebook_fits_the_newest_sweep_from_the_notebooks_folder(tmp_path, venv_python3_kernel):
    root = _clone(tmp_path)
    synthetic.make_sweep(root / "outputs" / "multirun" / "nb-sweep", base=synthetic.DEFAULT_BASE,
                         n_per_tier={"simple": 20, "medium": 15, "complex": 8})
    nb = _jupyter_execute(root, cwd=root / "notebooks", notebook="scaling_study.ipynb")
    text, pngs, markdown = _outputs(nb)
    assert len(pngs) == 6
    assert "Track 1" in markdown and "smol-135m → mini-200m" in markdown
    out = root / "outputs" / "fit" / "nb-sweep"
    assert f"wrote {out}/" in text
    doc = json.loads((out / "fit.json").read_text())
    assert doc["gain_per_100m"]["fine-tuned (full)"]["json_exact"]["overall"]
    assert not (root / "notebooks" / "outputs").exists() and not (root / "outputs" / "fit" / "edgejson_v3_depth").exists()


def test_notebook_has_no_logic_of_its_own():
    """Every computation is a call into scaling.fit: no numpy/scipy/matplotlib, no function
    or class definitions, and the committed notebook carries no outputs."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    for forbidden in ("import numpy", "import scipy", "matplotlib", "def ", "class ", "json.load"):
        assert forbidden not in code, forbidden
    assert "fit.run_fit(" in code and "fit.load_config(" in code
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in nb.cells if c.cell_type == "code")
