"""The analysts' notebook runs from top to bottom on a small sample (ENVLEADS_NOTEBOOK_SMALL=1)."""
import json
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("matplotlib")

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "pollution_classifier.ipynb"


def test_notebook_is_committed_clean():
    document = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    for cell in document["cells"]:
        if cell["cell_type"] == "code":
            assert cell.get("outputs") == [] and cell.get("execution_count") is None
        source = "".join(cell["source"])
        assert "/work/" not in source and "/home/" not in source and "/tmp/" not in source


def test_notebook_runs_on_a_small_sample(tmp_path, monkeypatch):
    monkeypatch.setenv("ENVLEADS_NOTEBOOK_SMALL", "1")
    # The project's own rows only: fast, and no real complaint text in the outputs.
    monkeypatch.setenv("ENVLEADS_SHARED_DATA", str(tmp_path / "no-shared-data"))
    monkeypatch.setenv("ENVLEADS_NOTEBOOK_REGISTRY", str(tmp_path / "registry"))
    notebook = nbformat.read(str(NOTEBOOK), as_version=4)
    client = nbclient.NotebookClient(notebook, timeout=120, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError naming the cell that failed
    versions = [p for p in (tmp_path / "registry" / "pollution_type").iterdir() if p.is_dir()]
    assert len(versions) == 1 and (versions[0] / "model.joblib").exists()
    # the first model of an empty registry becomes production; PROMOTE = False changes nothing
    aliases = json.loads((tmp_path / "registry" / "pollution_type" / "aliases.json").read_text())
    assert aliases["aliases"]["production"] == versions[0].name
    assert [entry["action"] for entry in aliases["history"]] == ["promote"]
    outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs]
    images = [o for o in outputs
              if o.get("output_type") == "display_data" and "image/png" in o.get("data", {})]
    # F1 bar, calibration, precision-recall, per-label confusion, comparison with production
    assert len(images) >= 4
    text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    assert "within noise" in text and "skipped: a small run" in text
