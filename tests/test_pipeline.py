"""The whole study end to end on the tiny ladder: sweep -> scaling.fit -> notebook.

The other tests check each part on its own data; this one checks that what training really
writes is what the analysis and the notebook read.
"""

from __future__ import annotations

import json

import nbformat
from nbclient import NotebookClient

from test_notebook import NOTEBOOK, venv_python3_kernel  # noqa: F401 - fixture re-used

LADDER = ("tiny_s", "tiny_m", "tiny_l")


def test_tiny_ladder_sweep_then_fit_then_notebook(tmp_path, run_scaling, fast_overrides, monkeypatch,
                                                  venv_python3_kernel):  # noqa: F811
    run_scaling("scaling.train", ["-m", f"model={','.join(LADDER)}", *fast_overrides, "sweep_name=pipeline",
                                  "logger=none"], tmp_path)
    sweep = tmp_path / "multirun" / "pipeline"
    results = [json.loads(p.read_text()) for p in sorted(sweep.glob("*/results.json"))]
    assert [r["status"] for r in results] == ["completed"] * 3
    totals = sorted(r["params"]["total"] for r in results)
    assert len(set(totals)) == 3  # three measured, distinct sizes

    proc = run_scaling("scaling.fit", [f"sweep_dir={sweep}", "name=pipeline", "n_boot=200", "n_boot_fit=5"], tmp_path)
    out = tmp_path / "fit" / "pipeline"
    assert "collect: 3 jobs" in proc.stdout + proc.stderr
    fit = json.loads((out / "fit.json").read_text())
    steps = fit["gain_per_100m"]["fine-tuned (full), random init"]["json_exact"]["overall"]
    assert len(steps) == 2  # tiny_s -> tiny_m -> tiny_l
    assert (out / "report.md").read_text().count("Track 1") >= 1
    pngs = sorted(out.glob("figures/*.png"))
    assert pngs and all(p.stat().st_size > 1000 for p in pngs)

    monkeypatch.setenv("SCALING_SWEEP_DIR", str(sweep))
    monkeypatch.setenv("SCALING_FIT_OVERRIDES", "n_boot=100 n_boot_fit=5")
    monkeypatch.setenv("SCALING_OUTPUT_ROOT", str(tmp_path / "nb"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, kernel_name=venv_python3_kernel, timeout=180,
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    assert (tmp_path / "nb" / "fit" / "pipeline" / "fit.json").exists()
