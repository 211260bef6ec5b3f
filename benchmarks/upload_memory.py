"""Peak memory of the sidecar and the demo under large uploads (issue: "the 36-megapixel cap is
not a memory bound").

Each server runs as its own process (`lesionlens serve`, `lesionlens demo`) over a random-weight
run exported to ONNX. After a warm-up request (model loaded) its resident memory is the
baseline; the peak (VmHWM, reset after the warm-up) is then read while BIG just-under-the-cap
uploads (RGBA PNGs of 5990 x 5990 = 35.9 MP, ~150 KB each, ~144 MB decoded) and VALID ordinary
ones arrive together, and the resident memory once they are answered and the server is idle.
Prints MB and ratios to the baseline (this machine is shared: absolute numbers drift, the
servers' own baselines do not).

    .venv/bin/python benchmarks/upload_memory.py [--arch resnet50] [--size 96] [--big 16] [--valid 16]
"""

from __future__ import annotations

import argparse
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIDE = 5990  # 35.88 MP: just under the 36 MP cap


def just_under_the_cap_png(side: int = SIDE, seed: int = 0) -> bytes:
    """An RGBA PNG of side x side with a few opaque stripes (so it is not all transparent),
    compressed row by row: never holds the raw pixels."""
    compressor = zlib.compressobj(9)
    blank = b"\0" + b"\0" * (side * 4)
    stripe = b"\0" + bytes([120 + seed % 100, 80, 60, 255]) * side
    idat = b"".join(compressor.compress(stripe if (y // 64) % 7 == 0 else blank) for y in range(side))
    idat += compressor.flush()

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 6, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def status_kb(pid: int, key: str) -> int:
    return int(next(line for line in open(f"/proc/{pid}/status") if line.startswith(key)).split()[1])


def reset_peak(pid: int) -> None:
    with open(f"/proc/{pid}/clear_refs", "w") as fh:  # "5": reset the peak resident set size
        fh.write("5")


def prepare(workdir: Path, arch: str, size: int) -> tuple[Path, Path, list[bytes]]:
    from lesionlens.data.synth import generate
    from lesionlens.export import ExportOptions, export_run
    from lesionlens.training.rundir import random_run

    run = random_run(workdir / "run", arch, size)
    export_run(run, workdir / "onnx", ExportOptions(max_images=4))
    data = workdir / "synth"
    generate(data, n=16, size=size, seed=1, progress=False)
    valid = [p.read_bytes() for p in sorted(data.rglob("img_*.png"))]
    return run, workdir / "onnx" / "model.onnx", valid


def wait_until(ok, seconds: float = 180) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            if ok():
                return
        except Exception:
            pass
        time.sleep(0.3)
    raise RuntimeError("server did not come up")


def measure(proc, warm, burst) -> dict:
    warm()
    time.sleep(1)
    base = status_kb(proc.pid, "VmRSS")
    reset_peak(proc.pid)
    started = time.perf_counter()
    outcome = burst()
    seconds = time.perf_counter() - started
    peak = status_kb(proc.pid, "VmHWM")
    time.sleep(3)
    after = status_kb(proc.pid, "VmRSS")
    return {"baseline_mb": base / 1024, "peak_mb": peak / 1024, "after_mb": after / 1024, "seconds": seconds,
            **outcome}


def sidecar(model: Path, run: Path, big: list[bytes], valid: list[bytes]) -> dict:
    import httpx

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-m", "lesionlens.cli", "serve", "--model", str(model), "--run", str(run),
                             "--port", str(port), "--device", "cpu"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def post(item):
        name, data = item
        return httpx.post(f"{url}/explain", files={"image": (name, data, "image/png")}, data={"method": "lrp"},
                          timeout=600)

    try:
        wait_until(lambda: httpx.get(f"{url}/health", timeout=2).status_code == 200)

        def burst():
            items = [("big.png", b) for b in big] + [("ok.png", v) for v in valid]
            with ThreadPoolExecutor(len(items)) as pool:
                codes = [r.status_code for r in pool.map(post, items)]
            return {"answered_200": sum(c == 200 for c in codes), "requests": len(codes)}

        return measure(proc, lambda: post(("ok.png", valid[0])), burst)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def demo(model: Path, run: Path, big: list[bytes], valid: list[bytes], workdir: Path) -> dict:
    from gradio_client import Client, handle_file

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "lesionlens.cli", "demo", "--model", str(model), "--run", str(run),
                             "--port", str(port), "--device", "cpu"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    files = []
    for k, data in enumerate(big + valid):
        path = workdir / f"upload_{k}.png"
        path.write_bytes(data)
        files.append(path)
    try:
        wait_until(lambda: Client(f"http://127.0.0.1:{port}/", verbose=False) is not None)
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)

        def call(path_and_endpoint):
            path, endpoint = path_and_endpoint
            try:
                if endpoint == "/predict":
                    client.predict(handle_file(str(path)), api_name="/predict")
                else:
                    client.predict(handle_file(str(path)), "lrp", 4, api_name="/explain")
                return True
            except Exception:
                return False

        def burst():
            # every upload is predicted (ONNX + the ring detector) and explained, as a user clicks both
            jobs = [(p, e) for p in files for e in ("/predict", "/explain")]
            with ThreadPoolExecutor(len(jobs)) as pool:
                ok = list(pool.map(call, jobs))
            return {"answered": sum(ok), "requests": len(ok)}

        return measure(proc, lambda: call((files[-1], "/explain")), burst)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="resnet50")
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--big", type=int, default=16)
    parser.add_argument("--valid", type=int, default=16)
    parser.add_argument("--only", choices=["sidecar", "demo"])
    args = parser.parse_args()
    os.environ.setdefault("TQDM_DISABLE", "1")
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        run, model, valid = prepare(workdir, args.arch, args.size)
        big = [just_under_the_cap_png(seed=k) for k in range(args.big)]
        valid = (valid * (args.valid // len(valid) + 1))[:args.valid]
        size_kb = len(just_under_the_cap_png()) / 1024
        print(f"{args.big} uploads of {SIDE}x{SIDE} RGBA PNG ({size_kb:.0f} KB each) + {args.valid} "
              f"valid {args.size}-px images; {args.arch}")
        for name in ("sidecar", "demo"):
            if args.only and name != args.only:
                continue
            r = sidecar(model, run, big, valid) if name == "sidecar" else demo(model, run, big, valid, workdir)
            print(f"{name}: baseline {r['baseline_mb']:.0f} MB, peak {r['peak_mb']:.0f} MB "
                  f"({r['peak_mb'] / r['baseline_mb']:.2f}x), idle after {r['after_mb']:.0f} MB "
                  f"({r['after_mb'] / r['baseline_mb']:.2f}x), {r['seconds']:.1f} s; "
                  + ", ".join(f"{k} {v}" for k, v in r.items() if k not in ("baseline_mb", "peak_mb", "after_mb", "seconds")),
                  flush=True)


if __name__ == "__main__":
    main()
