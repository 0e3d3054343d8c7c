"""Execute every teaching notebook at smoke size (LDM_SMOKE=1)."""

import os
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = sorted((Path(__file__).parents[1] / "notebooks").glob("*.ipynb"))
CELL_TIMEOUT_S = 120
# Every teaching notebook, so that a renamed or deleted one fails the suite.
EXPECTED = {
    "01-ica-as-ldm",
    "02-ssl-zoo",
    "03-kalman-ssl",
    "04-identifiability",
    "05-model-comparison",
}


def test_notebooks_found():
    found = {path.stem for path in NOTEBOOKS}
    missing = EXPECTED - found
    assert not missing, f"notebooks missing from notebooks/: {sorted(missing)}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_notebook_runs(path, tmp_path, monkeypatch):
    notebook = nbformat.read(path, as_version=4)
    assert all(
        not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"
    ), f"{path.name} is stored with outputs; strip them before committing"
    monkeypatch.setenv("LDM_SMOKE", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "1"))
    client = nbclient.NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()
