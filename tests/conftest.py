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
