"""Memory has a budget: images just under the 36 MP cap decode at reduced scale, a process
decodes only as many large images at once as its budget allows, and gives the memory back.
Proved on the servers themselves (`lesionlens serve`, `lesionlens demo` as processes) with the
benchmark's own code (benchmarks/upload_memory.py): the attack that took the sidecar to 9.8 GB
and the demo to 8.1 GB."""

import sys
import threading
import time

import pytest

from conftest import ROOT, run_python

sys.path.insert(0, str(ROOT / "benchmarks"))
import upload_memory  # noqa: E402  (the benchmark: uploads, servers, peak readings)


def test_one_just_under_the_cap_upload_costs_twice_its_pixels_not_six_times():
    """Decoding a 5990 x 5990 RGBA PNG for a 96-px model: the peak is the decoded image and one
    copy (~290 MB), not the ~890 MB a full-size decode and its conversions take."""
    code = ("import sys; sys.path.insert(0, 'benchmarks'); from upload_memory import just_under_the_cap_png; "
            "from lesionlens.data.decode import decode_image; data = just_under_the_cap_png(); "
            "peak = lambda: int(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1]); "
            "open('/proc/self/clear_refs', 'w').write('5'); before = peak(); "
            "rgb = decode_image(data, reduce_to=96); print(rgb.shape, (peak() - before) // 1024)")
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    shape, megabytes = result.stdout.rsplit(")", 1)
    side = int(shape.strip("(").split(",")[0])
    assert 96 <= side < 2 * 96 and int(megabytes) < 400, result.stdout  # never below the size asked


def test_the_decode_budget_is_never_exceeded():
    from lesionlens.data.memory import DecodeBudget

    budget, high, lock = DecodeBudget(100 << 20), [0], threading.Lock()

    def work(nbytes):
        with budget.reserve(nbytes):
            with lock:
                high[0] = max(high[0], budget.used)
            time.sleep(0.02)

    sizes = [60 << 20, 30 << 20, 90 << 20, 500 << 20, 45 << 20, 1 << 20] * 4  # one over the whole budget
    threads = [threading.Thread(target=work, args=(n,)) for n in sizes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert 60 << 20 <= high[0] <= 100 << 20 and budget.used == 0


@pytest.fixture(scope="module")
def burst(synth_small):
    big = [upload_memory.just_under_the_cap_png(seed=k) for k in range(16)]
    valid = [p.read_bytes() for p in sorted(synth_small.rglob("img_*.png"))[:16]]
    return big, valid


def _check(name, result):
    print(f"{name}: {result}")
    assert result["peak_mb"] < 2.5 * 1024, result  # the goal the attack was measured against
    # this run's model is small: what the burst adds is what decoding costs (before: +8 GB)
    assert result["peak_mb"] - result["baseline_mb"] < 1024, result
    assert result["after_mb"] - result["baseline_mb"] < 400, result  # and it is given back


def test_sidecar_peak_memory_under_16_large_and_16_valid_uploads(exported, trained_run, burst):
    result = upload_memory.sidecar(exported / "model.onnx", trained_run, *burst)
    assert result["answered_200"] == 32  # the large ones are explained too: they are valid images
    _check("sidecar", result)


def test_demo_peak_memory_under_16_large_and_16_valid_uploads(exported, trained_run, burst, tmp_path):
    result = upload_memory.demo(exported / "model.onnx", trained_run, *burst, tmp_path)
    assert result["answered"] == result["requests"] == 64
    _check("demo", result)
