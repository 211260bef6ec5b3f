"""`lesionlens report`: the executed notebook report. notebooks/report.ipynb is the template (its
cell tagged "parameters" holds RUNS, DATA, GALLERY, MAX_IMAGES); this fills that cell, executes the
notebook top to bottom with nbclient in DIR, and writes DIR/report.ipynb (with its outputs) and
DIR/report.html (nbconvert, figures embedded). A failing cell fails the command with its error."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ._io import write_text
from .errors import LesionlensError, UsageError
from .escape import strip_ansi
from .ranges import COUNT, Bounds

TEMPLATE = Path(__file__).resolve().parents[1] / "notebooks" / "report.ipynb"


class ReportError(LesionlensError, RuntimeError):
    """A report cell failed: the message carries the cell's error."""


def build_report(runs: Sequence[Path], data: Path, out: Path, gallery: int = 3, max_images: int = 300,
                 template: Path = TEMPLATE, timeout: int = 1800) -> tuple[Path, Path]:
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError
    from nbconvert import HTMLExporter

    from .training.rundir import RunDir

    if not template.is_file():
        raise UsageError(f"report template {template} not found (it ships in the repository's notebooks/)")
    Bounds(0, 64, whole=True).check("--gallery", gallery)
    COUNT.check("--max-images", max_images)
    runs = [Path(r).resolve() for r in runs]
    for run in runs:
        RunDir(run).read_metadata()  # a clear RunError for a folder that is not a run
    if not Path(data).exists():
        raise UsageError(f"{data}: no such file or folder")
    notebook = nbformat.read(str(template), as_version=4)
    cell = next((c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])), None)
    if cell is None:
        raise UsageError(f"{template}: no cell tagged 'parameters'")
    cell.source = (f"# parameters (written by lesionlens report)\nRUNS = {[str(r) for r in runs]!r}\n"
                   f"DATA = {str(Path(data).resolve())!r}\nGALLERY = {int(gallery)}\nMAX_IMAGES = {int(max_images)}\n")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    client = NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(out)}})
    try:
        client.execute()
    except CellExecutionError as exc:
        write_text(out / "report.failed.ipynb", nbformat.writes(notebook))
        text = strip_ansi(str(exc)).strip()  # the kernel's traceback carries terminal colour codes
        last = text.splitlines()[-1] if text else "a cell failed"
        raise ReportError(f"report cell failed: {last} (the partly executed notebook is in "
                          f"{out / 'report.failed.ipynb'})") from None
    executed = out / "report.ipynb"
    write_text(executed, nbformat.writes(notebook))
    html, _ = HTMLExporter().from_notebook_node(notebook)
    page = out / "report.html"
    write_text(page, html)
    return executed, page
