"""A folder is one set: an export, an audit, an explanation evaluation or a concept atlas
changes all its files at once, and a process killed at any step of the switch leaves the old
set or the new one, never a mix (lesionlens._fileset)."""

import json
import os
import shutil

import pytest

from conftest import run_python
from lesionlens._fileset import CONTROL, FileSet


def _read_set(folder):
    """{name: content} of every file the folder shows (links that lead nowhere are absent)."""
    out = {}
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith(".") or not entry.is_file():
            continue
        out[entry.name] = entry.read_text()
    return out


def _write_set(folder, files, legacy=False):
    if legacy:  # a folder written before sets existed: plain files
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (folder / name).write_text(text)
        return
    with FileSet(folder).staging() as stage:
        for name, text in files.items():
            (stage.path / name).write_text(text)
        stage.publish()


OLD = {"model.onnx": "old", "model.uint8.onnx": "old", "validation.json": "old"}
NEW = {"model.onnx": "new", "model.fp16.onnx": "new", "validation.json": "new"}


@pytest.mark.parametrize("legacy", [False, True], ids=["set", "plain files"])
def test_a_kill_at_any_step_leaves_the_old_set_or_the_new_one(tmp_path, legacy):
    """Fork a writer that dies (os._exit, like SIGKILL: no cleanup runs) at its k-th file-system
    step of the switch, for every k; what the folder shows is always one whole set."""
    outcomes, k = set(), 0
    while True:
        k += 1
        folder = tmp_path / f"k{k}"
        _write_set(folder, OLD, legacy)
        pid = os.fork()
        if pid == 0:  # the writer
            steps = {"n": 0}

            def dying(real):
                def step(*args, **kwargs):
                    steps["n"] += 1
                    if steps["n"] == k:
                        os._exit(9)
                    return real(*args, **kwargs)
                return step

            os.replace, os.symlink, os.unlink = dying(os.replace), dying(os.symlink), dying(os.unlink)
            os.rename = dying(os.rename)
            try:
                _write_set(folder, NEW)
            finally:
                os._exit(0)
        _, status = os.waitpid(pid, 0)
        shown = _read_set(folder)
        assert shown in (OLD, NEW), (k, shown)
        outcomes.add("old" if shown == OLD else "new")
        if os.waitstatus_to_exitcode(status) == 0:
            break
        # the next writer cleans up whatever the killed one left, and publishes
        _write_set(folder, {"model.onnx": "next"})
        assert _read_set(folder) == {"model.onnx": "next"}
        assert len(list((folder / CONTROL / "sets").iterdir())) == 1
        assert not [p for p in folder.iterdir() if p.name.endswith(".link")]
    assert outcomes == {"old", "new"} and k > 4  # both sides of the switch were hit


def test_files_outside_the_set_are_left_alone_and_a_second_writer_is_refused(tmp_path):
    from lesionlens.errors import UsageError

    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    fileset = FileSet(folder, members=lambda name: name.endswith(".onnx"))
    with fileset.staging() as stage:
        (stage.path / "model.onnx").write_text("a")
        with pytest.raises(UsageError, match="another lesionlens process"):
            with FileSet(folder).staging():
                pass
        stage.publish()
    _write_set(folder, {"model.onnx": "b"})
    assert (folder / "notes.txt").read_text() == "mine" and (folder / "model.onnx").read_text() == "b"


def test_an_exception_while_building_leaves_the_folder_as_it_was(tmp_path):
    folder = tmp_path / "out"
    _write_set(folder, OLD)
    with pytest.raises(RuntimeError):
        with FileSet(folder).staging() as stage:
            (stage.path / "model.onnx").write_text("half")
            raise RuntimeError("validation failed")
    assert _read_set(folder) == OLD
    assert len(list((folder / CONTROL / "sets").iterdir())) == 1


def test_a_killed_export_never_mixes_models_and_cleans_up_after_itself(trained_run, tmp_path):
    """A real export killed just before and just after the rename that switches sets (the first
    version of this code, killed after its first rename, left a new model.onnx beside an old
    model.uint8.onnx and an old validation.json): the folder holds one export whole, the old
    one or the new one; the next export replaces it and removes the leftovers."""
    from lesionlens.export import ExportOptions, export_run

    out = tmp_path / "onnx"
    names = ("model.onnx", "model.uint8.onnx", "validation.json")
    export_run(trained_run, out, ExportOptions(uint8_input=True, max_images=4))
    old = {name: (out / name).read_bytes() for name in names}
    for when in ("before", "after"):
        (out / ".export-stale").mkdir()  # what an older version's killed export left
        # a separate interpreter (forking a process that runs torch's thread pools can deadlock)
        killed = run_python(
            "import os\n"
            "from lesionlens.export import ExportOptions, export_run\n"
            "real = os.replace\n"
            "def replace(src, dst, *args, **kwargs):\n"
            f"    if '.current.' in str(src) and {when!r} == 'after':\n"
            "        real(src, dst, *args, **kwargs)\n"
            "    if '.current.' in str(src):\n"
            "        os._exit(9)\n"
            "    real(src, dst, *args, **kwargs)\n"
            "os.replace = replace\n"
            f"export_run({str(trained_run)!r}, {str(out)!r}, ExportOptions(max_images=4, min_confidence=0.5))\n",
            timeout=600)
        assert killed.returncode == 9, killed.stderr
        shown = {name: (out / name).read_bytes() for name in names if (out / name).is_file()}
        if when == "before":
            assert shown == old  # all old, nothing new
        else:  # all new: its validation names its one variant, and the old uint8 model is gone
            assert set(shown) == {"model.onnx", "validation.json"}
            assert set(json.loads(shown["validation.json"])["variants"]) == {"model.onnx"}
            assert json.loads(shown["validation.json"])["weights_sha256"] in shown["model.onnx"].decode("latin-1")
    export_run(trained_run, out, ExportOptions(max_images=4, min_confidence=0.5))
    assert not (out / "model.uint8.onnx").exists() and not (out / "model.uint8.onnx").is_symlink()
    report = json.loads((out / "validation.json").read_text())
    assert set(report["variants"]) == {"model.onnx"}
    assert not list(out.glob(".export-*")) and not list(out.glob(".*.link"))
    assert len(list((out / CONTROL / "sets").iterdir())) == 1
    shutil.rmtree(out)
