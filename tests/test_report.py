"""`lesionlens report` executes notebooks/report.ipynb top to bottom on a small run and writes
the HTML; a failing input is one line, not a traceback."""

import json

from conftest import run_cli


def test_report_executes_and_writes_html(trained_run, synth_small, tmp_path):
    out = tmp_path / "report"
    result = run_cli("report", "--run", str(trained_run), "--run", str(trained_run), "--data", str(synth_small),
                     "--out", str(out), "--gallery", "2", "--max-images", "40", timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    notebook = json.loads((out / "report.ipynb").read_text())
    outputs = [o for cell in notebook["cells"] if cell["cell_type"] == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o["output_type"] == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 4  # training curves, ROC, and the gallery (one row per method)
    html = (out / "report.html").read_text()
    for heading in ("ROC curves", "majority baseline", "The same images, every method", "Explanation evaluation"):
        assert heading in html


def test_report_refuses_a_folder_that_is_not_a_run(synth_small, tmp_path):
    result = run_cli("report", "--run", str(tmp_path), "--data", str(synth_small), "--out", str(tmp_path / "o"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
