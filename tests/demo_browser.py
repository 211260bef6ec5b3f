"""Drive the demo in a real browser (Debian's chromium through Playwright): load the page, upload
an image, click Predict and wait for the status, click Explain, wait for the heatmap, take a
screenshot; or explain with CRP and read how the concept gallery shows its figures. Used by
tests/test_demo.py, and to make the README's screenshot from any exported run:

    .venv/bin/python tests/demo_browser.py MODEL.onnx RUN IMAGE docs/img/demo.png [--crp]

(--crp: explained with CRP, so the screenshot shows the concept gallery.)
"""

from __future__ import annotations

import shutil
import sys
from contextlib import contextmanager
from pathlib import Path


def chromium_path():
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _predict(page, url: str, image: Path) -> None:
    """Load the page, upload `image`, click Predict and wait for its status (and for the
    explanation a flagged case gets right away)."""
    page.goto(url, wait_until="networkidle")
    page.locator("#upload input[type=file]").set_input_files(str(image))
    page.locator("#upload img").first.wait_for(timeout=60_000)  # the upload's preview
    page.locator("#predict").click()
    page.get_by_text("flagged at >=").first.wait_for(timeout=120_000)  # the prediction's status
    # a flagged case is explained right after Predict, an unflagged one says so: wait for either
    page.get_by_text("Explained class:").or_(page.get_by_text("Not flagged: press")).first.wait_for(timeout=180_000)


@contextmanager
def _predicted_page(url: str, image: Path, width: int):
    """A browser page on the demo with `image` uploaded and predicted; the browser closes after."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": width, "height": 1000})
            _predict(page, url, image)
            yield page
        finally:
            browser.close()


def upload_and_explain(url: str, image: Path, screenshot: Path, width: int = 1100) -> int:
    """Returns the heatmap's natural width in pixels (0 if it never appeared: Playwright raises)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    with _predicted_page(url, image, width) as page:
        page.locator("#explain").click()
        # while an event runs Gradio puts a progress text on its outputs: wait for it to come
        # and go (a fast answer may have come and gone already)
        pending = page.locator("#heatmap .progress-text")
        try:
            pending.first.wait_for(state="attached", timeout=5_000)
        except PlaywrightTimeout:
            pass
        pending.first.wait_for(state="detached", timeout=180_000)
        page.wait_for_timeout(1000)
        heatmap = page.locator("#heatmap img").first
        heatmap.wait_for(timeout=60_000)
        natural_width = heatmap.evaluate("img => img.naturalWidth")
        page.screenshot(path=str(screenshot), full_page=True)
        return natural_width


def concept_gallery(url: str, image: Path, screenshot: Path, method: str = "CRP concepts",
                    width: int = 1100) -> list[dict]:
    """Explain with `method` (its label in the dropdown) and return, per figure of the concept
    gallery, how the page fits it into its box (CSS object-fit), its natural and shown sizes, and
    the gallery's `hidden` height: how much of it lies beyond its own scroll box (0: the page
    shows every figure; Gradio's default box is 550 px high), and how far its caption reaches up
    over the figure (`caption_over`, px; None without a caption)."""
    with _predicted_page(url, image, width) as page:
        page.get_by_label("Explanation method").click()
        page.get_by_role("option", name=method).click()
        page.locator("#explain").click()
        page.get_by_text("Concepts shown:").first.wait_for(timeout=180_000)
        figures = page.locator("#concepts img")
        figures.first.wait_for(timeout=60_000)
        page.wait_for_timeout(1000)
        page.screenshot(path=str(screenshot), full_page=True)
        return figures.evaluate_all(
            "imgs => imgs.map(img => ({fit: getComputedStyle(img).objectFit, natural: [img.naturalWidth,"
            " img.naturalHeight], shown: [img.clientWidth, img.clientHeight], hidden: (w =>"
            " w.scrollHeight - w.clientHeight)(document.querySelector('#concepts .grid-wrap')), caption_over: (c =>"
            " c ? img.getBoundingClientRect().bottom - c.getBoundingClientRect().top : null)"
            "(img.closest('button').querySelector('.caption-label'))}))")


if __name__ == "__main__":
    import socket

    from lesionlens.demo.app import launch

    model, run, image, out = (Path(a) for a in sys.argv[1:5])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = launch(model, run, port=port, device="cpu", block=False)
    try:
        if "--crp" in sys.argv[5:]:
            print("concept figures", concept_gallery(f"http://127.0.0.1:{port}/", image, out))
        else:
            print("heatmap width", upload_and_explain(f"http://127.0.0.1:{port}/", image, out))
    finally:
        app.close()
