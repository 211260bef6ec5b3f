"""Names are data: a class name, a file name or a run folder's name goes into file names, pages,
Markdown and spreadsheets, and must never act there (the second attack's findings 1-4)."""

import csv
import io
import json
from html.parser import HTMLParser

import pytest

from conftest import run_cli, write_png, random_rgb

HOSTILE = ["<script>alert(1)</script>", "<img src=x onerror=alert(1)>", "../../ESCAPED", "a/b", "x" * 400,
           "=HYPERLINK(\"http://evil\")", "@SUM(1)", "melanoma\u202e", "..", "nevus.", ""]


class ActiveMarkup(HTMLParser):
    """Collects start tags that could run script or load something: what injected data adds."""

    def __init__(self):
        super().__init__()
        self.found = []

    def handle_starttag(self, tag, attrs):
        handlers = [name for name, _ in attrs if name.lower().startswith("on")]
        if handlers or tag in ("svg", "iframe", "object", "embed"):
            self.found.append((tag, attrs))


def active_markup(page: str) -> list:
    parser = ActiveMarkup()
    parser.feed(page)
    return parser.found


# ---- the rule, at read time ----------------------------------------------------------------

@pytest.mark.parametrize("name", HOSTILE)
def test_a_label_that_cannot_be_a_class_name_is_refused_naming_file_and_line(tmp_path, name):
    from lesionlens.data.readers import read_csv
    from lesionlens.errors import DatasetError

    table = tmp_path / "labels.csv"
    with open(table, "w", newline="") as fh:
        csv.writer(fh).writerows([["image", "label"], ["a.png", "benign"], ["b.png", name], ["c.png", "benign"]])
    expect = "empty or NaN label" if not name.strip() else r"labels\.csv: 1 label\(s\) that cannot be class names: line 3"
    with pytest.raises(DatasetError, match=expect):
        read_csv(table)


def test_ordinary_class_names_pass_and_case_twins_do_not(tmp_path):
    from lesionlens.data.readers import read_csv
    from lesionlens.errors import DatasetError
    from lesionlens.names import class_list_problem, class_slug

    for good in (["MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC", "SCC", "UNK"],
                 ["seborrheic keratosis", "Nevus (benign)", "mélanome", "grade-2+", "a.b"]):
        assert class_list_problem(good) is None, good
    table = tmp_path / "labels.csv"
    table.write_text("image,label\na.png,Melanoma\nb.png,melanoma\n")
    with pytest.raises(DatasetError, match="differ only in case"):
        read_csv(table)
    assert class_slug(3, "../../x <y>") == "3-x-y" and class_slug(0, "<>") == "0-class"


def test_one_hot_headers_and_folder_names_are_class_names_too(tmp_path):
    from lesionlens.data.readers import read_csv, read_folder
    from lesionlens.errors import DatasetError

    table = tmp_path / "onehot.csv"
    table.write_text("image,MEL,NV,<b>x</b>\na,1,0,0\nb,0,1,0\nc,0,0,1\n")
    with pytest.raises(DatasetError, match=r"line 1: '<b>x</b>' contains"):
        read_csv(table)
    write_png(tmp_path / "data" / "benign" / "a.png", random_rgb(0))
    write_png(tmp_path / "data" / "<svg onload=alert(1)>" / "b.png", random_rgb(1))
    with pytest.raises(DatasetError, match="this class folder's name contains '<'"):
        read_folder(tmp_path / "data")


def test_model_json_and_onnx_metadata_with_hostile_classes_are_refused(trained_run, exported, tmp_path):
    import shutil

    from lesionlens.errors import MetadataError, RunError
    from lesionlens.runtime.metadata import ModelMetadata
    from lesionlens.training.rundir import RunDir

    run = tmp_path / "run"
    shutil.copytree(trained_run, run, ignore=shutil.ignore_patterns("concept_atlas", "explain_eval", "audit"))
    meta = json.loads((run / "model.json").read_text())
    meta["classes"] = ["benign", "../../melanoma"]
    meta["positive_class"] = "../../melanoma"
    (run / "model.json").write_text(json.dumps(meta))
    with pytest.raises(RunError, match="class name '../../melanoma' contains '/'"):
        RunDir(run).read_metadata()
    import onnx

    props = {p.key: p.value for p in onnx.load(str(exported / "model.onnx"), load_external_data=False).metadata_props}
    props["classes"] = json.dumps(["benign", "<img src=x onerror=alert(1)>"])
    with pytest.raises(MetadataError, match="class name '<img src=x onerror=alert.1.>' contains"):
        ModelMetadata.from_props(props)


def test_synth_refuses_classes_that_would_write_outside_out(tmp_path):
    out = tmp_path / "deep" / "out"
    result = run_cli("synth", str(out), "--n", "4", "--size", "32", "--classes", "../../ESCAPED,melanoma")
    assert result.returncode == 2 and "--classes" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "ESCAPED").exists() and not (tmp_path / "deep" / "ESCAPED").exists()


# ---- the sinks ------------------------------------------------------------------------------

def test_markdown_and_html_escaping_neutralise_every_hostile_string():
    from lesionlens.escape import html_text, md_text

    for text in HOSTILE + ["[click](javascript:alert(1))", "a | b", "**bold**", "line\nbreak"]:
        md = md_text(text)
        assert "<" not in md and ">" not in md and "\n" not in md
        assert "](" not in md.replace("\\]", "") and "|" not in md.replace("\\|", "")
        assert not active_markup(html_text(text)) and "<" not in html_text(text)


def test_spreadsheet_cells_never_start_a_formula(tmp_path):
    from lesionlens.runtime.batch import write_results
    from lesionlens.runtime.classifier import Prediction

    sources = ["=HYPERLINK(\"evil.example\",\"x\").png", "+1.png", "-1.png", "@SUM(A1).png", "\tx.png", "ok.png"]
    predictions = [Prediction(s, "melanoma", {"benign": 0.2, "melanoma": 0.8}, True, "positive") for s in sources]
    predictions.append(Prediction("=cmd|' /C calc'!A0.png", error="=not an image"))
    for fmt in ("csv", "isic"):
        out = tmp_path / f"results.{fmt}.csv"
        write_results(predictions, ["benign", "melanoma"], out, fmt=fmt)
        rows = list(csv.reader(io.StringIO(out.read_text())))
        cells = [cell for row in rows for cell in row if cell and not cell.replace(".", "").isdigit()]
        assert cells and not [c for c in cells if c[0] in "=+-@\t\r"], cells
        assert any(c.startswith("'=HYPERLINK") for c in cells)


def test_audit_markdown_escapes_file_names(tmp_path):
    """A file called <img src=x onerror=alert(1)>.png that does not decode is named in the
    audit (unreadable finding) as text, not as markup."""
    from lesionlens.data.synth import generate

    data = tmp_path / "data"
    generate(data, n=24, size=48, seed=0, progress=False)
    (data / "benign" / "<img src=x onerror=alert(1)>.png").write_bytes(b"not an image")
    result = run_cli("audit", "--data", str(data), "--out", str(tmp_path / "audit"), "--quiet")
    assert result.returncode == 1, result.stderr
    page = (tmp_path / "audit" / "audit.md").read_text()
    assert "onerror" in page and "<img" not in page and "&lt;img" in page


def test_model_card_escapes_what_the_run_directory_says(trained_run, tmp_path):
    import shutil

    from lesionlens.demo.model_card import model_card_markdown

    run = tmp_path / "run"
    shutil.copytree(trained_run, run, ignore=shutil.ignore_patterns("concept_atlas", "explain_eval", "audit"))
    meta = json.loads((run / "model.json").read_text())
    meta["data"]["source"] = "/data/<img src=x onerror=alert(1)>"
    (run / "model.json").write_text(json.dumps(meta))
    (run / "audit").mkdir()
    (run / "audit" / "audit.json").write_text(json.dumps({"findings": [
        {"kind": "unreadable", "flagged": True, "summary": "<script>alert(1)</script> failed to decode"}]}))
    card = model_card_markdown(run)
    assert "onerror" in card and "<img" not in card and "<script" not in card


def test_the_report_shows_hostile_run_names_and_findings_as_text(trained_run, synth_small, tmp_path):
    """The report of a run whose folder is named <svg onload=alert(1)>, with an audit finding
    carrying an <img onerror> and a data folder with a hostile name: the page has no element
    or handler that came from data."""
    import shutil

    run = tmp_path / "runs" / "<svg onload=alert(1)>"
    shutil.copytree(trained_run, run, ignore=shutil.ignore_patterns("concept_atlas", "explain_eval", "audit"))
    (run / "audit").mkdir()
    (run / "audit" / "audit.json").write_text(json.dumps({"findings": [
        {"kind": "unreadable", "flagged": True, "summary": "<img src=x onerror=alert(2)> failed to decode"}],
        "figures": ["../../../etc/passwd", "spray_<x>.png"]}))
    data = tmp_path / "<img src=y onerror=alert(3)>"
    shutil.copytree(synth_small, data)
    out = tmp_path / "report"
    result = run_cli("report", "--run", str(run), "--data", str(data), "--out", str(out), "--gallery", "1",
                     "--max-images", "24", timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    page = (out / "report.html").read_text()
    assert "alert(1)" in page and "alert(2)" in page and "alert(3)" in page  # shown ...
    injected = [(tag, attrs) for tag, attrs in active_markup(page) if "alert" in json.dumps(attrs)]
    assert not injected, injected  # ... as text only
