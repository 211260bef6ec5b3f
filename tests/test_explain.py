import json

import numpy as np
import pytest
import torch

from conftest import run_cli, zero_biases
from lesionlens.data import decode_image, preprocess
from lesionlens.explain import Explainer, explain, explain_batch
from lesionlens.explain.rules import without_stabiliser
from lesionlens.training import ARCHITECTURES, load_run
from lesionlens.training.rundir import random_run


@pytest.fixture(scope="module")
def random_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("explain_runs")
    return {arch: load_run(random_run(root / arch, arch, size=64)) for arch in ARCHITECTURES}


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("method", ["lrp", "crp", "gradcam", "attention"])
def test_every_method_gives_a_heatmap_at_input_resolution(random_runs, arch, method):
    model, meta = random_runs[arch]
    x = torch.randn(3, 64, 64, generator=torch.Generator().manual_seed(0))
    if method == "attention" and arch != "attention_resnet50":
        with pytest.raises(ValueError, match="attention head"):
            explain(model, x, method=method)
        return
    e = explain(model, x, method=method, classes=meta.classes, **({"concepts": 3} if method == "crp" else {}))
    assert e.heatmap.shape == (64, 64) and np.isfinite(e.heatmap).all()
    assert e.method == method and e.target == e.prediction["index"]
    assert abs(sum(e.prediction["probabilities"].values()) - 1) < 1e-5
    if method == "crp":
        assert len(e.concepts) == 3 and all(c.heatmap.shape == (64, 64) for c in e.concepts)
    if method == "attention":
        assert e.heatmap.min() >= 0  # softmax weights


def test_explicit_targets_and_range_check(random_runs):
    model, meta = random_runs["resnet50"]
    x = torch.randn(2, 3, 64, 64)
    a, b = explain_batch(model, x, [0, None], "lrp", meta.classes)
    assert a.target == 0 and b.target == b.prediction["index"]
    with pytest.raises(ValueError, match="out of range"):
        explain(model, x[0], target=2)
    with pytest.raises(ValueError, match="out of range"):
        explain(model, x[0], target=2, classes=meta.classes)
    with pytest.raises(ValueError, match="out of range"):
        explain(model, x[0], target=-1)  # -1 is the internal "predicted" marker, not a class


@pytest.mark.parametrize("method", ["lrp", "crp", "attention"])
def test_the_prediction_comes_from_the_methods_own_forward(random_runs, method):
    """No separate forward just for the prediction: each method runs the full model once (CRP
    adds, per image, a pass that stops at its concept layer, below the head); and the reported
    probabilities are the model's own."""
    model, meta = random_runs["attention_resnet50"]
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    heads = []
    handle = model.pool.register_forward_pre_hook(lambda *_: heads.append(1))
    try:
        explanations = explain_batch(model, x, [None, 0], method, meta.classes,
                                     **({"concepts": 2} if method == "crp" else {}))
    finally:
        handle.remove()
    assert len(heads) == 1
    with torch.no_grad():
        probs = torch.softmax(model(x), 1)
    for e, p in zip(explanations, probs):
        assert np.allclose(list(e.prediction["probabilities"].values()), p.numpy(), atol=1e-5)
    assert explanations[0].target == int(probs[0].argmax()) and explanations[1].target == 0
    with pytest.raises(ValueError, match="unknown method"):
        explain(model, x[0], method="shap")


def test_crp_concepts_add_up_to_the_layer_and_do_not_leak(trained_run):
    """exclude_parallel=True: a concept's conditional heatmap carries that channel's own
    relevance, so over all channels of a layer they add up to the layer's total (biases
    zeroed, so nothing is absorbed). Without it, relevance conditioned on one channel inside a
    residual block also flows back through the shortcut: the leak behind "every CRP channel
    gives the same heatmap" on ResNets."""
    import lesionlens.explain.crp_compat  # noqa: F401  (before crp: np.int on numpy 2)
    from crp.attribution import CondAttribution

    from lesionlens.explain.lrp import composite_for
    from lesionlens.training.models import spec_of_model

    model, meta = load_run(trained_run)
    zero_biases(model)
    layer = "blocks.5.1.conv_pwl"  # inside an InvertedResidual with a skip connection
    assert model.get_submodule("blocks.5.1").has_skip
    channels = model.get_submodule(layer).out_channels
    x = torch.randn(3, 32, 32, generator=torch.Generator().manual_seed(1)) * 1.5
    rules = without_stabiliser(spec_of_model(model).composite)  # conserving: nothing absorbed
    with Explainer(model, "crp", concepts=channels, layer=layer, composite=rules) as explainer:
        e = explainer.explain(x[None], [1])[0]
    assert len(e.concepts) == channels
    assert abs(sum(abs(c.relevance_share) for c in e.concepts) - 1) < 1e-4
    attribution, composite = CondAttribution(model, no_param_grad=True), composite_for(model, rules)
    full = attribution(x[None].clone().requires_grad_(), [{"y": [1]}], composite, record_layer=[layer])
    per_channel = full.relevances[layer][0].sum((1, 2))
    layer_total = float(per_channel.sum())
    concept_total = sum(float(c.heatmap.sum()) for c in e.concepts)
    assert abs(concept_total - layer_total) <= 0.01 * abs(layer_total), (concept_total, layer_total)
    top = e.concepts[0]
    own = float(per_channel[top.channel])
    assert abs(float(top.heatmap.sum()) - own) <= 0.01 * abs(own) + 1e-7
    leaked = attribution(x[None].clone().requires_grad_(), [{layer: [top.channel], "y": [1]}], composite,
                         exclude_parallel=False).heatmap.sum()
    # the shortcut's relevance leaks in: several times the channel's own (7.7x and over 10x on two
    # trainings of this fixture; how much depends on the weights, that it dwarfs `own` does not)
    assert abs(float(leaked) - own) > 3 * abs(own)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_fast_crp_equals_zennit_crp(random_runs, arch):
    """The batched CRP on the fast engine against zennit-crp's CondAttribution (exclude_parallel)
    with our composite: the same top channels, shares and conditional heatmaps."""
    import copy

    from lesionlens.explain import Explainer

    model = copy.deepcopy(random_runs[arch][0])
    # timm zero-initialises each residual block's last BatchNorm scale, which would leave every
    # concept of the default layer (the last block's conv3) without relevance: randomise them
    generator = torch.Generator().manual_seed(3)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.weight.data = torch.rand(module.weight.shape, generator=generator) + 0.5
            module.bias.data = torch.randn(module.bias.shape, generator=generator) * 0.1
    x = torch.randn(2, 3, 64, 64, generator=generator) * 1.5
    targets = torch.tensor([0, 1])
    with Explainer(model, "crp", concepts=6) as explainer:
        fast = explainer.explain(x, targets.tolist())
    with Explainer(model, "crp", concepts=6, engine="zennit") as explainer:
        reference = explainer.explain(x, targets.tolist())
    assert fast[0].info["engine"] == "fast" and reference[0].info["engine"] == "zennit"
    # what the figures smooth the map over: the stem's stride (render.display_map)
    assert fast[0].info["input_grid"] == {"resnet50": 4, "attention_resnet50": 4, "efficientnet_b0_relu": 2}[arch]
    cosine = torch.nn.functional.cosine_similarity
    heat = lambda es: torch.from_numpy(np.stack([e.heatmap for e in es])).flatten(1)  # noqa: E731
    assert cosine(heat(fast), heat(reference)).min() >= 0.9999
    for ours, theirs in zip([e.concepts for e in fast], [e.concepts for e in reference]):
        assert [c.channel for c in ours] == [c.channel for c in theirs]
        # the shares agree to 1% of the largest: with epsilon rules a channel's relevance is a sum
        # of terms that cancel, and the two engines add them in different orders (float32; the
        # z+ rules of the old default agreed within 1e-5)
        largest = max(abs(b.relevance_share) for b in theirs)
        assert all(abs(a.relevance_share - b.relevance_share) <= 0.01 * largest for a, b in zip(ours, theirs))
        assert any(abs(c.relevance_share) > 1e-3 for c in theirs)  # not a degenerate all-zero case
        b = torch.stack([c.heatmap for c in theirs]).flatten(1)
        scale = b.abs().amax(1, keepdim=True)  # cosine_similarity clamps norms below 1e-8
        a = torch.stack([c.heatmap for c in ours]).flatten(1)
        assert cosine(a / scale, b / scale).min() >= 0.9999
        # totals to 0.1% of the largest concept's: a small concept's total is a sum that cancels
        # (EfficientNet's stabilised epsilon stages: 0.14% apart on a total 30x below the largest)
        assert torch.allclose(a.sum(1), b.sum(1), rtol=1e-3, atol=1e-3 * float(b.sum(1).abs().max()))


def test_cli_explain_writes_overlay_and_json(trained_run, synth_small, tmp_path):
    image = next((synth_small / "melanoma").glob("*.png"))
    out = tmp_path / "h.png"
    result = run_cli("explain", str(trained_run), str(image), "--method", "crp", "--concepts", "2",
                     "--concept-choice", "distinct", "--target", "melanoma", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert out.read_bytes()[:4] == b"\x89PNG"
    data = json.loads(out.with_suffix(".json").read_text())
    assert data["target_label"] == "melanoma" and len(data["concepts"]) == 2
    assert data["info"]["concept_choice"] == "distinct"
    assert all((tmp_path / c["heatmap_png"]).exists() for c in data["concepts"])
    result = run_cli("explain", str(trained_run), str(image), "--method", "attention")
    assert result.returncode == 2 and "attention_resnet50" in result.stderr and "Traceback" not in result.stderr
    result = run_cli("explain", str(trained_run), str(image), "--concept-choice", "distinct")  # lrp
    assert result.returncode == 2 and "--concept-choice applies to crp" in result.stderr
    result = run_cli("explain", str(trained_run), str(image), "--method", "crp", "--concept-choice", "best")
    assert result.returncode == 2 and "invalid choice: 'best'" in result.stderr


def test_main_jobs_flagged_case_script_explains_only_flagged_rows_for_the_flagged_class(trained_run, synth_small,
                                                                                        tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    images = sorted((synth_small / "benign").glob("*.png"))[:3]
    predictions = tmp_path / "predictions.csv"
    predictions.write_text("path,label,flagged,flag_reason\n"
                           f"{images[0]},benign,1,positive\n{images[1]},benign,0,\n{images[2]},benign,1,uncertain\n")
    script = Path(__file__).resolve().parents[1] / "scripts" / "explain_flagged.py"
    result = subprocess.run([sys.executable, str(script), str(trained_run), str(predictions), str(tmp_path / "maps"),
                             "--methods", "lrp"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    written = sorted(p.name for p in (tmp_path / "maps").glob("*.png"))
    assert written == sorted([f"{images[0].stem}.lrp.png", f"{images[2].stem}.lrp.png"])
    # flagged for the positive class: explained for it although the row's prediction is benign
    assert json.loads((tmp_path / "maps" / f"{images[0].stem}.lrp.json").read_text())["target_label"] == "melanoma"
    uncertain = json.loads((tmp_path / "maps" / f"{images[2].stem}.lrp.json").read_text())
    assert uncertain["target_label"] == uncertain["prediction"]["label"]


def test_concept_atlas_is_built_once_cached_and_tied_to_the_weights(trained_run, tmp_path):
    import shutil

    from lesionlens.explain.atlas import AtlasError, ConceptAtlas, build_atlas

    run = tmp_path / "run"
    shutil.copytree(trained_run, run, ignore=shutil.ignore_patterns("concept_atlas"))
    with pytest.raises(AtlasError, match="lesionlens atlas"):
        ConceptAtlas.open(run)
    folder = build_atlas(run, max_images=24, batch_size=8).folder
    index = json.loads((folder / "atlas.json").read_text())
    assert index["layer"] == "blocks.5" and len(index["images"]) == 24
    atlas = ConceptAtlas.open(run)
    model, _ = load_run(run)
    first = torch.from_numpy(preprocess(decode_image(index["images"][0]), atlas.spec))
    channel = explain(model, first, method="crp", concepts=1, layer="blocks.5").concepts[0].channel
    top = atlas.top_images(channel, 4)
    assert 1 <= len(top) <= 4 and all(0 <= i < 24 for i in top)
    patches = atlas.references(channel)
    assert len(patches) == len(top) and all(p.shape == (64, 64, 3) and p.dtype == np.uint8 for p in patches)
    cached = folder / "patches" / "blocks.5" / f"{channel}.png"
    assert cached.is_file()
    assert all(np.array_equal(a, b) for a, b in zip(patches, atlas.references(channel)))
    # the generator's data has feature masks: the concept is named by the regions under its relevance
    from lesionlens.data.synth import FEATURES

    # (a top image whose conditional map has no positive relevance cannot name it: the briefly
    # trained model has such maps, so some channel among the first 16 must be named, not all)
    names = {c: atlas.name(c) for c in range(16)}
    named = {c: n for c, n in names.items() if n is not None}
    assert named, names
    for c, name in named.items():
        assert 1 <= name["images"] <= 4 and name["region"] in (*FEATURES, "artifact", "lesion_rest", "skin", "mixed")
        assert name["share"] == max(name["shares"].values())
        assert (folder / "names" / "blocks.5" / f"{c}.json").is_file() and atlas.name(c) == name
    # other weights: the atlas is refused, not silently reused
    meta = load_run(run)[1]
    meta.weights_sha256 = "0" * 64
    with pytest.raises(AtlasError, match="other weights"):
        ConceptAtlas(run, model, meta)


def test_figures_say_when_the_evidence_lies_on_a_dark_frame():
    """The benign-with-dark-corners case: a figure must say in words that the corners decided."""
    from types import SimpleNamespace

    from lesionlens.data.synth import sample_photo
    from lesionlens.explain.files import FRAME_WARNING, evidence_on_frame, frame_note

    framed, _, frame = sample_photo(seed=4, size=96, frame="corners")
    plain, lesion, _ = sample_photo(seed=5, size=96)
    on_frame = (frame > 127).astype(float)
    on_lesion = (lesion > 127).astype(float)
    share, area = evidence_on_frame(framed, on_frame)
    assert share > 0.9 and abs(area - on_frame.mean()) < 0.1
    assert evidence_on_frame(framed, 1 - on_frame)[0] < 0.1
    assert evidence_on_frame(plain, on_lesion) is None  # no frame: nothing to say
    explained = SimpleNamespace(method="lrp", target_label="melanoma", heatmap=on_frame)
    assert frame_note(explained, framed).startswith(f"WARNING: {share:.0%} of the evidence for 'melanoma'")
    mostly_lesion = 1 - on_frame + 0.05 * on_frame
    note = frame_note(SimpleNamespace(method="lrp", target_label="melanoma", heatmap=mostly_lesion), framed)
    assert evidence_on_frame(framed, mostly_lesion)[0] < FRAME_WARNING and note.startswith("dark frame detected")
    assert frame_note(SimpleNamespace(method="attention", target_label="x", heatmap=on_frame), framed) is None


def test_a_concept_card_shows_one_share_and_the_bar_what_was_clipped():
    from lesionlens.explain.files import concept_share_text
    from lesionlens.explain.methods import Concept
    from lesionlens.explain.render import clipped_share, colour_scale

    # the main job's case: melanoma explained on an image called benign (logit -0.66); a
    # concept with relevance +0.034 (drawn red) is 0.034 / -0.66 = -5% "of the logit"
    red = Concept("layer3", 906, relevance_share=0.0099, share_of_logit=-0.0508, layer_share_of_logit=1.0)
    assert red.decision_share == pytest.approx(-0.0508) and red.evidence_share == pytest.approx(0.0508)
    assert concept_share_text(red, "melanoma") == "+5% of the logit's size: evidence for 'melanoma'"
    blue = Concept("layer3", 803, relevance_share=-0.0074, share_of_logit=0.0378, layer_share_of_logit=1.0)
    assert concept_share_text(blue, "melanoma") == "-4% of the logit's size: evidence against 'melanoma'"
    uncarried = Concept("layer3", 1, relevance_share=0.3, share_of_logit=0.1, layer_share_of_logit=0.2)
    assert "not shown" in concept_share_text(uncarried, "melanoma") and "20% of the logit" in concept_share_text(
        uncarried, "melanoma")
    heatmap = np.zeros((100, 100))
    heatmap[:10, :10] = 1.0  # 1% of the pixels
    heatmap[0, 0] = 1000.0  # one extreme value: the scale is not set by it
    scale = colour_scale(heatmap)
    assert scale == pytest.approx(1.0) and clipped_share(heatmap, scale) == pytest.approx(0.0001)


def test_a_concept_is_named_by_the_region_that_holds_its_relevance():
    from lesionlens.explain.feature_names import MIN_SHARE, label, name_from, shares

    globules = np.zeros((8, 8), bool)
    globules[:2, :2] = True
    skin = ~globules
    on_globules = np.where(globules, 1.0, -0.5)  # negative relevance is not the concept's evidence
    assert shares(on_globules, {"globules": globules, "skin": skin}) == {"globules": 1.0, "skin": 0.0}
    assert shares(-np.ones((8, 8)), {"skin": skin}) == {}
    name = name_from([{"globules": 0.9, "skin": 0.1}, {"globules": 0.5, "skin": 0.5}, {"skin": 1.0}])
    assert name["region"] == "skin" and name["share"] == pytest.approx(1.6 / 3, abs=1e-3) and name["images"] == 3
    assert label(name) == "skin, 53% of its relevance"
    spread = name_from([{f"r{k}": 0.1 for k in range(10)}])
    assert spread["region"] == "mixed" and spread["share"] < MIN_SHARE and label(spread).startswith("mixed")
    assert name_from([]) is None and label(None) is None
