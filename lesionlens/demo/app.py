"""`lesionlens demo`: the Gradio face of the product. The ONNX runtime predicts; the explanation
engine (in-process, or a running `lesionlens serve` given with --sidecar) explains; the audit's
ring detector looks at every upload; a model card tab reads the run directory.

Predict and explain are separate events with their own concurrency limits (explanations queued,
one at a time per device) and named API endpoints (`/predict`, `/explain`), so the demo is
scriptable with gradio_client. A bad upload is a readable message (gr.Error), never a traceback.
"""

from __future__ import annotations

import base64
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import cv2
import numpy as np

from ..errors import LesionlensError, UsageError, one_line
from ..escape import html_text, md_text

MAX_FILE_SIZE = "20mb"
EXAMPLES = 6
METHOD_LABELS = {"lrp": "LRP (evidence for / against)", "crp": "CRP concepts", "gradcam": "Grad-CAM",
                 "attention": "Attention (where the model pools)", "attention_crp": "Attention + CRP concepts"}
PREDICT_CONCURRENCY = 4
EXPLAIN_CONCURRENCY = 1  # one explanation at a time per device; the rest wait in Gradio's queue
RING_DECODE_SIZE = 256  # what the dark-field detector needs (as in the audit)


@dataclass
class DemoParts:
    classifier: object  # runtime.Classifier
    explanations: object  # backends.InProcessExplanations | SidecarExplanations
    run: Path
    examples_dir: Optional[Path]
    revised: object = None  # backends.RevisedComparison, with --revised


def user_error(message: str):
    """gr.Error renders its message as HTML: anything from data in it is escaped."""
    import gradio as gr

    return gr.Error(html_text(message))


def _png_to_rgb(b64: str) -> np.ndarray:
    data = np.frombuffer(base64.b64decode(b64), np.uint8)
    return cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def _read_upload(path) -> bytes:
    """The uploaded file's bytes. The events run with preprocess=False, so Gradio hands over its
    file payload ({"path": ...}) untouched: our decoder, not Gradio's PIL preview, judges the file
    and words the error (Gradio's own message would show its cache path)."""
    import gradio as gr

    if isinstance(path, dict):
        path = path.get("path")
    if not path:
        raise gr.Error("Upload an image first (or pick an example).")
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise user_error(f"The upload could not be read: {exc.strerror or exc}") from None


def ring_message(rgb: np.ndarray, run: Path) -> str:
    """A plain warning when the dark-field (microscope ring) detector fires on this image."""
    from ..data.dark_field import detect_dark_field
    from .model_card import ring_finding

    if not detect_dark_field(rgb).is_ring:
        return ""
    text = ("**Microscope ring detected.** This photo has the dark frame of a dermatoscope's round field "
            "(a black or grey surround, dark corners or dark side bands). "
            "Models trained on merged data have learned to call the ring instead of the lesion: this model's "
            "decision may rest on the ring.")
    finding = ring_finding(run)
    if finding:
        association = finding.get("ring_label_association")
        paste = finding.get("counterfactual_paste")
        if association:
            text += f" The audit of this run's data: {md_text(association['summary'])}"
        if paste:
            text += f" The audit of this model: {md_text(paste['summary'])}"
    else:
        text += " No audit report for this run (run `lesionlens audit ... --run RUN --out RUN/audit`)."
    return text


def predict_image(parts: DemoParts, path: Optional[str]) -> tuple[dict, str]:
    """(class probabilities for gr.Label, a markdown status: flagged or not, the threshold, the
    ring warning)."""
    from ..data.decode import decode_image

    data = _read_upload(path)
    prediction = parts.classifier.predict([data])[0]
    if not prediction.ok:
        raise user_error(f"This file cannot be classified: {prediction.error}")
    policy = parts.classifier.metadata.flag_policy
    lines = []
    if prediction.flagged:
        lines.append(f"### FLAGGED ({prediction.flag_reason.replace('+', ' and ')})")
    else:
        lines.append("### Not flagged")
    if policy.positive_class is not None and policy.threshold is not None:
        p = prediction.probabilities[policy.positive_class]
        lines.append(f"P({md_text(policy.positive_class)}) = {p:.3f}; flagged at >= {policy.threshold:.3f} "
                     "(the decision threshold chosen on validation for the target sensitivity).")
    if policy.min_confidence:
        lines.append(f"Also flagged when the top probability is below {policy.min_confidence:.2f} (uncertain).")
    # the detector looks at 64 px: a reduced decode, never a second full-size copy of an upload
    warning = ring_message(decode_image(data, reduce_to=RING_DECODE_SIZE), parts.run)
    if warning:
        lines.append(warning)
    return dict(prediction.probabilities), "\n\n".join(lines)


def explain_image(parts: DemoParts, path: Optional[str], method: str, concepts: int = 4,
                  target: Optional[str] = None):
    """(the overlay figure, CRP concept gallery [(figure, caption)], a markdown note). `target`:
    the class to explain (default: the predicted one)."""
    from ..errors import RequestError
    from ..explain.concept_choice import DESCRIPTIONS
    from .backends import ExplanationUnavailable

    data = _read_upload(path)
    if method not in parts.explanations.methods:
        raise user_error(f"Method {method!r} is not available for this model; use one of {parts.explanations.methods}.")
    try:
        result = parts.explanations.explain(data, method, int(concepts), target)
    except RequestError as exc:
        raise user_error(f"This file cannot be explained: {one_line(exc)}") from None
    except ExplanationUnavailable as exc:
        raise user_error(f"The explanation engine is unavailable: {one_line(exc)}") from None
    gallery = []
    for concept in result.get("concepts", []):
        if concept.get("overlay_png_base64"):
            from ..explain.feature_names import label

            share = concept.get("evidence_share")  # the one share the concept's card shows
            named = label(concept.get("name"))
            side = "for" if share is not None and share >= 0 else "against"
            caption = (f"{concept['layer']} channel {concept['channel']}" + (f" ({named})" if named else "") + (
                f": {100 * share:+.0f}% of the logit's size, evidence {side} the explained class"
                if share is not None else ""))
            gallery.append((_png_to_rgb(concept["overlay_png_base64"]), caption))
            if concept.get("reference_patches_png_base64"):
                gallery.append((_png_to_rgb(concept["reference_patches_png_base64"]),
                                f"channel {concept['channel']}: where it fires most in the training images"))
    prediction = result.get("prediction", {})
    note = (f"Explained class: **{md_text(result.get('target_label'))}** (predicted {md_text(prediction.get('label'))}). "
            "Red = evidence for that class, blue = evidence against.")
    choice = result.get("info", {}).get("concept_choice")
    if choice in DESCRIPTIONS:  # the sidecar's own word, but only one of ours is printed
        note += f" Concepts shown: {DESCRIPTIONS[choice]}."
    return _png_to_rgb(result["overlay_png_base64"]), gallery, note


def compare_image(parts: DemoParts, path: Optional[str]):
    """(original | revised figure, markdown): `demo --revised`'s side-by-side view."""
    from ..data.decode import ImageDecodeError

    data = _read_upload(path)
    try:
        figure, lines = parts.revised.compare(data)
    except ImageDecodeError as exc:
        raise user_error(f"This file cannot be explained: {exc.reason}") from None
    note = ("The model before and after `lesionlens revise` removed the shortcut, LRP for the flag's class. "
            "Red = evidence for that class, blue = evidence against.\n\n" + "\n\n".join(f"- {line}" for line in lines))
    return figure, note


def _examples(run: Path, out: Path, count: int = EXAMPLES) -> list[str]:
    """A few of the run's own validation images, copied under neutral names into `out` (the
    page never shows a server path, and never a file the user did not choose)."""
    from ..training.rundir import RunDir

    run_dir = RunDir(run)
    try:
        meta = run_dir.read_metadata()
        samples = run_dir.read_splits(meta.classes, ["val"])
    except LesionlensError:
        return []
    chosen, seen = [], set()
    for sample in samples:  # alternate classes so each appears
        if sample.label in seen and len(seen) < len(meta.classes):
            continue
        seen.add(sample.label)
        if Path(sample.path).is_file():
            target = out / f"example_{len(chosen) + 1}{Path(sample.path).suffix.lower()}"
            shutil.copyfile(sample.path, target)
            chosen.append(str(target))
        if len(chosen) >= count:
            break
    return chosen


def build_demo(parts: DemoParts):
    import gradio as gr

    from .model_card import model_card_markdown

    methods = [m for m in parts.explanations.methods]
    examples = _examples(parts.run, parts.examples_dir) if parts.examples_dir else []
    with gr.Blocks(title="lesionlens", analytics_enabled=False) as demo:
        gr.Markdown("# lesionlens\nA skin-lesion classifier whose every prediction can be explained. "
                    "Research software, not a medical device.")
        with gr.Tab("Classify and explain"):
            with gr.Row():
                with gr.Column():
                    image = gr.Image(type="filepath", label="Dermoscopy image", sources=["upload"],
                                     elem_id="upload")
                    if examples:
                        gr.Examples(examples, inputs=image, label="Examples (this model's validation images)")
                    method = gr.Dropdown([(METHOD_LABELS.get(m, m), m) for m in methods], value=methods[0],
                                         label="Explanation method")
                    concepts = gr.Slider(1, 8, value=4, step=1, label="CRP concepts")
                    with gr.Row():
                        predict_button = gr.Button("Predict", variant="primary", elem_id="predict")
                        explain_button = gr.Button("Explain", elem_id="explain")
                with gr.Column():
                    label = gr.Label(label="Class probabilities (ONNX Runtime)", elem_id="probabilities")
                    flagged_box = gr.Checkbox(label="Flagged for review (the model's flag policy)", interactive=False,
                                              elem_id="flagged")
                    status = gr.Markdown(elem_id="status")
            # the figure carries its own title and colour bar: a component label would cover the title
            heatmap = gr.Image(label="Explanation", show_label=False, type="numpy", interactive=False,
                               elem_id="heatmap")
            note = gr.Markdown()
            # one figure per row, each whole (a thumbnail's default "cover" crops the figure's title,
            # its colour bar and what the bar says): at the page's width the text stays readable
            gallery = gr.Gallery(label="CRP concepts: what the model used, and where", columns=1, height="auto",
                                 object_fit="contain", elem_id="concepts")

            def predict(path):
                probabilities, text = predict_image(parts, path)
                return probabilities, text, text.startswith("### FLAGGED")

            def explain(path, method_name, count):
                return explain_image(parts, path, method_name, count)

            def explain_if_flagged(path, method_name, count, flagged):
                if not flagged:
                    return gr.skip(), gr.skip(), "Not flagged: press **Explain** for a heatmap."
                # a case flagged for the positive class is explained for that class, even when
                # another class has the higher probability: the evidence a reviewer needs
                positive = parts.classifier.metadata.flag_policy.positive_class
                return explain_image(parts, path, method_name, count, target=positive)

            predict_event = predict_button.click(predict, [image], [label, status, flagged_box], api_name="predict", preprocess=False,
                                                 concurrency_limit=PREDICT_CONCURRENCY, concurrency_id="predict")
            # flagged cases are explained without asking (the same queue and limit as Explain)
            predict_event.success(explain_if_flagged, [image, method, concepts, flagged_box], [heatmap, gallery, note],
                                  api_visibility="private", preprocess=False, concurrency_limit=EXPLAIN_CONCURRENCY,
                                  concurrency_id="explain")
            explain_button.click(explain, [image, method, concepts], [heatmap, gallery, note], api_name="explain", preprocess=False,
                                 concurrency_limit=EXPLAIN_CONCURRENCY, concurrency_id="explain")
        if parts.revised is not None:
            with gr.Tab("Original and revised"):
                gr.Markdown("The same upload, explained by the original model and by its revision (the shortcut "
                            "the audit found removed): does the evidence move off the frame?")
                compare_image_input = gr.Image(type="filepath", label="Dermoscopy image", sources=["upload"],
                                               elem_id="compare-upload")
                if examples:
                    gr.Examples(examples, inputs=compare_image_input, label="Examples")
                compare_button = gr.Button("Compare", variant="primary", elem_id="compare")
                compare_figure = gr.Image(show_label=False, type="numpy", interactive=False, elem_id="compare-figure")
                compare_note = gr.Markdown()
                compare_button.click(lambda path: compare_image(parts, path), [compare_image_input],
                                     [compare_figure, compare_note], api_name="compare", preprocess=False,
                                     concurrency_limit=EXPLAIN_CONCURRENCY, concurrency_id="explain")
        with gr.Tab("Model card"):
            gr.Markdown(model_card_markdown(parts.run))
    return demo


def make_parts(model: Path, run: Path, sidecar: Optional[str] = None, token: Optional[str] = None,
               device: str = "auto", revised: Optional[Path] = None) -> DemoParts:
    from ..sidecar.validation import validate_run_for
    from ..runtime.classifier import Classifier
    from .backends import InProcessExplanations, SidecarExplanations

    validate_run_for(model, run)  # the run must be the ONNX model's (same weights hash)
    classifier = Classifier(model)
    explanations = SidecarExplanations(sidecar, token) if sidecar else InProcessExplanations(model, run, device)
    comparison = None
    if revised is not None:
        from .backends import RevisedComparison

        comparison = RevisedComparison(Path(run), Path(revised))
    return DemoParts(classifier, explanations, Path(run), Path(tempfile.mkdtemp(prefix="lesionlens-demo-")),
                     comparison)


def parse_auth(auth: Optional[str]) -> Optional[tuple[str, str]]:
    if not auth:
        return None
    user, sep, password = auth.partition(":")
    if not sep or not user or not password:
        raise UsageError("--auth takes USER:PASSWORD")
    return user, password


def check_exposure(host: str, share: bool, auth: Optional[str], public: bool) -> None:
    """Like the sidecar, the demo refuses to be reachable beyond this machine without a
    password, unless the operator says so in so many words (--public)."""
    from ..sidecar.guards import is_loopback

    if auth or public:
        return
    if share:
        raise UsageError("--share makes a public link anyone can open: add --auth USER:PASSWORD, or --public "
                         "to share it without one")
    if not is_loopback(host):
        raise UsageError(f"--host {host} exposes the demo beyond this machine: add --auth USER:PASSWORD, or "
                         "--public to serve it without one")


# Gradio's gallery cells are square and its grid scrolls inside a 550-px window (even with
# height="auto"): a concept figure (wider than tall, 618 px high at the page's width) sat between
# grey bands in a 940-px cell, and no figure was ever in view whole. Each cell takes its figure's
# own height, and the gallery grows to hold them all (the page scrolls, not a box inside it);
# the first figure's title starts below the gallery's label, which covered it. The class names are
# Gradio 6's; the browser test (tests/test_demo.py) fails if a Gradio update renames them.
CONCEPT_GALLERY_CSS = ("#concepts .thumbnail-item { aspect-ratio: auto; height: auto; } "
                       "#concepts .thumbnail-item img { height: auto; } "
                       "#concepts .grid-wrap { max-height: none; height: auto; overflow: visible; } "
                       "#concepts .grid-container { padding-top: 2.5rem; } "  # clear of the label
                       # the caption (channel, name, share) below its figure, wrapped, not laid over
                       # the figure's corner
                       "#concepts .caption-label { position: static; max-width: none; white-space: normal; }")


def launch(model: Path, run: Path, *, sidecar: Optional[str] = None, token: Optional[str] = None,
           share: bool = False, auth: Optional[str] = None, host: str = "127.0.0.1", port: int = 7860,
           device: str = "auto", block: bool = True, public: bool = False, revised: Optional[Path] = None):
    check_exposure(host, share, auth, public)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    parts = make_parts(model, run, sidecar, token, device, revised)
    demo = build_demo(parts)
    demo.queue(default_concurrency_limit=PREDICT_CONCURRENCY)
    demo.launch(server_name=host, server_port=port, share=share, auth=parse_auth(auth), max_file_size=MAX_FILE_SIZE,
                show_error=True, allowed_paths=[str(parts.examples_dir)], prevent_thread_lock=not block,
                footer_links=[], quiet=not block, css=CONCEPT_GALLERY_CSS)
    return demo
