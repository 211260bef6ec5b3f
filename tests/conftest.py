import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def write_png(path: Path, rgb: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path)
    return path


def random_rgb(seed: int, h: int = 40, w: int = 48) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def run_python(code: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, cwd=ROOT)


HEAVY_MODULES = ("torch", "timm", "zennit", "crp", "gradio")


def assert_runs_without_heavy_imports(code: str) -> None:
    """Run `code` in a fresh interpreter, then check that none of HEAVY_MODULES got imported
    (the data layer and the runtime must stay light)."""
    check = f"; import sys; bad = [m for m in {HEAVY_MODULES!r} if m in sys.modules]; assert not bad, bad; print('clean')"
    result = run_python(code + check)
    assert result.returncode == 0 and "clean" in result.stdout, result.stderr + result.stdout


def tampered_onnx(model: Path, out: Path, key: str, value: str) -> Path:
    """A copy of the ONNX `model` at `out` with one metadata value replaced."""
    import onnx

    proto = onnx.load(str(model))
    for prop in proto.metadata_props:
        if prop.key == key:
            prop.value = value
    onnx.save(proto, str(out))
    return out


def run_cli(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lesionlens.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


@pytest.fixture(scope="session")
def synth_small(tmp_path_factory) -> Path:
    """120 synthetic 64-px images, rings planted in 80% of melanomas."""
    from lesionlens.data.synth import generate

    out = tmp_path_factory.mktemp("synth_small")
    generate(out, n=120, size=64, seed=3, artifact="ring", artifact_rate=0.8, progress=False)
    return out


def zero_biases(model) -> None:
    """Zero every bias and BatchNorm shift, so LRP rules absorb no relevance (conservation tests)."""
    import torch

    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.bias.zero_()
                module.running_mean.zero_()
            elif isinstance(getattr(module, "bias", None), torch.Tensor):
                module.bias.zero_()


def write_random_run(run: Path, arch: str, size: int = 32, classes=("benign", "melanoma"), seed: int = 0) -> Path:
    """A run directory around randomly initialised weights (for tests that need every
    architecture but no training)."""
    from lesionlens.training.rundir import random_run

    return random_run(run, arch, size, classes, seed)


@pytest.fixture(scope="session")
def trained_run(synth_small, tmp_path_factory) -> Path:
    """A briefly trained efficientnet_b0_relu run (32 px) on synth_small."""
    from lesionlens.training import TrainConfig, train

    out = tmp_path_factory.mktemp("trained") / "run"
    return train(TrainConfig(data=str(synth_small / "metadata.csv"), arch="efficientnet_b0_relu", out=str(out),
                             epochs=2, image_size=32, batch_size=16, progress=False, workers=0))


@pytest.fixture(scope="session")
def exported(trained_run, tmp_path_factory) -> Path:
    """trained_run exported with every variant and a Triton repository."""
    from lesionlens.export import ExportOptions, export_run

    out = tmp_path_factory.mktemp("exported")
    export_run(trained_run, out, ExportOptions(fp16=True, uint8_input=True, int8=True, triton_repo=out / "triton"))
    return out
