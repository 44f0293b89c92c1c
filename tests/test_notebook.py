"""notebooks/scaling_study.ipynb runs top to bottom against a synthetic sweep."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from nbclient import NotebookClient

from scaling.fit import synthetic

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


def test_notebook_executes_on_a_synthetic_sweep(tmp_path, monkeypatch, venv_python3_kernel):
    sweep = synthetic.make_sweep(tmp_path / "multirun" / "nb-sweep", base=synthetic.DEFAULT_BASE,
                                 n_per_tier={"simple": 20, "medium": 15, "complex": 8})
    monkeypatch.setenv("SCALING_SWEEP_DIR", str(sweep))
    monkeypatch.setenv("SCALING_FIT_OVERRIDES", "n_boot=100 n_boot_fit=5")
    monkeypatch.setenv("SCALING_OUTPUT_ROOT", str(tmp_path / "outputs"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    client = NotebookClient(nb, kernel_name=venv_python3_kernel, timeout=180,
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute()    # raises CellExecutionError on any failing cell

    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert f"prefix: {sys.prefix}" in text            # the kernel ran the venv's python
    pngs = [o for o in outputs if o.output_type == "display_data" and "image/png" in o.get("data", {})]
    assert len(pngs) == 6
    markdown = "".join(o["data"].get("text/markdown", "") for o in outputs if o.output_type == "display_data")
    assert "Track 1" in markdown and "smol-135m → mini-200m" in markdown
    out = tmp_path / "outputs" / "fit" / "nb-sweep"
    doc = json.loads((out / "fit.json").read_text())
    assert doc["gain_per_100m"]["fine-tuned (full)"]["json_exact"]["overall"]


def test_notebook_has_no_logic_of_its_own():
    """Every computation is a call into scaling.fit: no numpy/scipy/matplotlib, no function
    or class definitions, and the committed notebook carries no outputs."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    for forbidden in ("import numpy", "import scipy", "matplotlib", "def ", "class ", "json.load"):
        assert forbidden not in code, forbidden
    assert "fit.run_fit(" in code and "fit.load_config(" in code
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in nb.cells if c.cell_type == "code")
