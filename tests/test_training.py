import json
import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from conftest import ROOT, run_cli
from lesionlens.training import TrainConfig, load_run, train
from lesionlens.errors import RunError, TrainingError

FAST = dict(arch="efficientnet_b0_relu", image_size=32, batch_size=16, progress=False, workers=0)


def _history(run):
    return [{k: v for k, v in row.items() if k != "seconds"}
            for row in json.loads((run / "checkpoint" / "last.json").read_text())["progress"]["history"]]


def test_run_directory_contract(synth_small, tmp_path):
    run = train(TrainConfig(data=str(synth_small / "metadata.csv"), out=str(tmp_path / "run"), epochs=2, **FAST))
    for name in ("model.safetensors", "model.json", "metrics.json", "history.csv", "splits.csv",
                 "duplicates.csv", "data_summary.json", "plots/history.png", "plots/roc.png",
                 "plots/confusion_matrix.png", "checkpoint/last.json"):
        assert (run / name).is_file(), name
    assert len(list((run / "checkpoint").glob("state-*.safetensors"))) == 1  # older states cleaned up
    assert not list(run.rglob(".*.tmp"))  # no temp files left behind
    assert all(oct(p.stat().st_mode & 0o777) == oct(0o644) for p in run.rglob("*") if p.is_file()), \
        [(p.name, oct(p.stat().st_mode & 0o777)) for p in run.rglob("*") if p.is_file()]
    meta = json.loads((run / "model.json").read_text())
    assert meta["format_version"] == 2
    assert meta["classes"] == ["benign", "melanoma"] and meta["positive_class"] == "melanoma"
    assert meta["preprocessing"]["size"] == 32
    assert 0 <= meta["decision_threshold"] <= 1
    assert {"torch", "timm", "lesionlens"} <= set(meta["versions"])
    assert meta["data"]["images_used"] == 120 and meta["data"]["skipped_unreadable"] == 0
    metrics = json.loads((run / "metrics.json").read_text())
    val = metrics["val"]
    for key in ("accuracy", "balanced_accuracy", "roc_auc", "sensitivity", "specificity", "majority_baseline"):
        assert key in val
    model, loaded = load_run(run)
    assert not model.training and loaded.weights_sha256 == meta["weights_sha256"]
    # recomputed here from the saved model, split and threshold (not read back from metrics.json):
    # the stored sensitivity is what the stored threshold gives on the stored validation split
    from lesionlens.training.dataset import LesionDataset
    from lesionlens.training.rundir import RunDir

    samples = RunDir(run).read_splits(loaded.classes, ["val"])
    dataset = LesionDataset(samples, loaded.preprocessing, train=False)
    with torch.no_grad():
        probs = torch.softmax(model(torch.stack([dataset[i][0] for i in range(len(dataset))])), 1)[:, 1].numpy()
    positive = np.array([s.label == 1 for s in samples])
    recomputed = float((probs[positive] >= loaded.decision_threshold).mean())
    assert recomputed == pytest.approx(val["sensitivity"]) and recomputed >= 0.9
    # no patient in two splits
    splits = {}
    for line in (run / "splits.csv").read_text().splitlines()[1:]:
        _, _, group, split = line.rsplit(",", 3)
        splits.setdefault(group, set()).add(split)
    assert all(len(s) == 1 for s in splits.values())
    with pytest.raises(TrainingError, match="already holds a run"):
        train(TrainConfig(data=str(synth_small), out=str(run), epochs=1, **FAST))
    # tampered weights are refused
    (run / "model.safetensors").write_bytes((run / "model.safetensors").read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(RunError, match="sha256"):
        load_run(run)


class Killed(Exception):
    pass


def test_resume_reproduces_the_uninterrupted_run(synth_small, tmp_path):
    base = dict(data=str(synth_small / "metadata.csv"), epochs=3, **FAST)
    straight = train(TrainConfig(out=str(tmp_path / "straight"), **base))

    def die_after_first_epoch(epoch, row):
        if epoch == 1:
            raise Killed()

    with pytest.raises(Killed):
        train(TrainConfig(out=str(tmp_path / "resumed"), **base), on_epoch_end=die_after_first_epoch)
    assert not (tmp_path / "resumed" / "model.json").exists()
    resumed = train(TrainConfig(out=str(tmp_path / "resumed"), resume=True, **base))
    assert _history(resumed) == _history(straight)
    a, b = load_file(str(straight / "model.safetensors")), load_file(str(resumed / "model.safetensors"))
    assert a.keys() == b.keys()
    assert all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)


def test_resume_after_sigkill_through_the_cli(synth_small, tmp_path):
    run = tmp_path / "run"
    args = ["train", "--data", str(synth_small / "metadata.csv"), "--arch", "efficientnet_b0_relu", "--out", str(run),
            "--epochs", "3", "--image-size", "32", "--batch-size", "16", "--quiet"]
    proc = subprocess.Popen([sys.executable, "-m", "lesionlens.cli", *args], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = run / "checkpoint" / "last.json"
    deadline = time.time() + 240
    while time.time() < deadline and not state.exists():
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert state.exists(), "no checkpoint appeared"
    done = json.loads(state.read_text())["progress"]["epoch"]
    assert done < 3 and not (run / "model.json").exists()
    result = run_cli(*args, "--resume")
    assert result.returncode == 0, result.stderr
    history = json.loads(state.read_text())["progress"]["history"]
    assert [row["epoch"] for row in history] == [1, 2, 3]
    assert (run / "model.json").exists()


def test_distributed_two_processes_on_cpu(synth_small, tmp_path):
    run = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "-m", "lesionlens.cli", "train", "--data", str(synth_small / "metadata.csv"), "--arch",
         "efficientnet_b0_relu", "--out", str(run), "--epochs", "2", "--image-size", "32",
         "--batch-size", "8", "--device", "cpu", "--quiet"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    meta = json.loads((run / "model.json").read_text())
    assert meta["distributed"]["world_size"] == 2
    history = json.loads((run / "checkpoint" / "last.json").read_text())["progress"]["history"]
    assert len(history) == 2
    # each rank saw half of the training images per epoch, in batches of 8
    n_train = sum(1 for line in (run / "splits.csv").read_text().splitlines()[1:] if line.endswith(",train"))
    assert meta["distributed"]["steps_per_epoch"] == math.ceil(n_train / 2) // 8


def test_cli_errors_are_one_line_with_exit_2(tmp_path):
    (tmp_path / "one" / "benign").mkdir(parents=True)
    result = run_cli("train", "--data", str(tmp_path / "one"), "--arch", "resnet50", "--out", str(tmp_path / "r"))
    assert result.returncode == 2
    assert "no images found" in result.stderr and "Traceback" not in result.stderr
    result = run_cli("evaluate", str(tmp_path / "nothing"), "--data", str(tmp_path / "one"))
    assert result.returncode == 2 and "not a finished run" in result.stderr and "Traceback" not in result.stderr
