"""explain-eval: its metrics on fixed arrays (against the definitions), the randomisation check
telling a model-blind map from LRP, and the command end to end (report files, bad images)."""

import json

import numpy as np
import pytest
import torch

from conftest import run_cli
from lesionlens.explain.evaluation import metrics


def test_localisation_metrics_follow_their_definitions():
    mask = np.zeros((1, 4, 4), bool)
    mask[0, :2, :2] = True  # 4 of 16 pixels
    a = np.zeros((1, 4, 4))
    a[0, 0, 0], a[0, 0, 1], a[0, 3, 3] = 3.0, 1.0, 4.0  # evidence 4 inside, 4 outside
    assert metrics.mass_accuracy(a, mask)[0] == pytest.approx(0.5)
    # top-4 pixels by value: (3,3), (0,0), (0,1) and a zero: 2 of the 4 mask pixels
    assert metrics.rank_accuracy(a, mask)[0] == pytest.approx(0.5)
    assert metrics.pointing_game(a, mask)[0] == 0.0  # the maximum (4.0) is outside
    a[0, 1, 1] = 9.0
    assert metrics.pointing_game(a, mask)[0] == 1.0
    signed = np.array([[[-5.0, 1.0], [0.0, 2.0]]])
    assert np.array_equal(metrics.evidence(signed), [[[0.0, 1.0], [0.0, 2.0]]])
    assert np.array_equal(metrics.evidence(signed, signed=False), np.abs(signed))


def test_distinctness_spearman_sign_and_ci():
    base = np.random.default_rng(0).standard_normal((8, 8))
    same_up_to_sign = np.stack([base, -base, 2 * base])
    assert metrics.mean_abs_cosine(same_up_to_sign) == pytest.approx(1.0)
    orthogonal = np.zeros((2, 2, 2))
    orthogonal[0, 0, 0] = orthogonal[1, 1, 1] = 1.0
    assert metrics.mean_abs_cosine(orthogonal) == pytest.approx(0.0)
    a = np.random.default_rng(1).standard_normal((3, 6, 6))
    assert np.allclose(metrics.spearman(a, a), 1.0) and np.allclose(metrics.spearman(a, -a), -1.0)
    assert metrics.spearman(a, np.ones_like(a)).tolist() == [0.0, 0.0, 0.0]  # constant: no ranking
    assert metrics.sign_agrees(np.array([1.0, -2.0, 3.0]), np.array([0.5, 1.0, 2.0])).tolist() == [1, 0, 1]
    values = np.random.default_rng(2).normal(0.3, 0.1, 300)
    ci = metrics.bootstrap_ci(values, seed=0)
    assert ci["low"] < ci["mean"] < ci["high"] and ci["n"] == 300
    assert ci["high"] - ci["low"] < 0.05  # ~ 4 standard errors of 0.1/sqrt(300)
    assert metrics.bootstrap_ci(values, seed=0) == ci
    assert metrics.bootstrap_ci([np.nan, np.nan])["mean"] is None


def test_randomisation_flags_an_edge_detector_and_passes_lrp(synth_small, tmp_path):
    """The check's purpose: a map that ignores the model (Sobel edges) keeps Spearman 1 however
    much of the model is re-initialised; LRP with the default rules falls with each stage.
    (A ResNet50 with BatchNorm statistics from data: the randomisation draws new weights, so
    the maps of a model that LRP explains must move. The trained-model numbers are pinned in
    test_learning.py.)"""
    from conftest import write_random_run
    from lesionlens.explain.evaluation.data import load_eval_images
    from lesionlens.explain.evaluation.runner import evaluate_methods, parse_methods
    from lesionlens.training.models import spec_of_model
    from lesionlens.training.rundir import load_run

    model, meta = load_run(write_random_run(tmp_path / "run", "resnet50", size=64))
    data = load_eval_images(synth_small, meta.preprocessing, meta.classes, 16)
    model.train()
    with torch.no_grad():
        model(torch.from_numpy(data.images))
    model.eval()
    spec = spec_of_model(model)
    scores = evaluate_methods(model, data, parse_methods(["lrp", "edge", "random"], spec, 0), sensitivity_n=0)
    edge = [np.mean(r["abs"]) for r in scores["edge"].randomisation]
    lrp = [np.mean(r["abs"]) for r in scores["lrp"].randomisation]
    assert len(edge) == len(spec.stages) == len(lrp)
    assert min(edge) > 0.99, edge
    assert lrp[-1] < 0.8 and lrp[-1] < min(edge) - 0.2, lrp
    # the noise floor: the same image with imperceptible noise, nothing randomised. A map that
    # ignores its input (the random reference) does not move at all; LRP moves less under the
    # noise than with every weight re-initialised
    floor = scores["lrp"].per_image["noise_floor"]
    assert floor.shape == (16,) and np.all(np.abs(floor) <= 1)
    assert np.mean(floor) > lrp[-1] + 0.1, (np.mean(floor), lrp)
    assert np.allclose(scores["random"].per_image["noise_floor"], 1.0)


def test_crp_at_another_concept_layer(tmp_path):
    """crp@LAYER scores the concepts of another of the architecture's concept layers (the
    resolution question of issue 19: layer2 is 12x12 at 96 px, layer3 6x6); a layer that is not
    one, or a layer on another method, is refused before any work."""
    from conftest import write_random_run
    from lesionlens.errors import UsageError
    from lesionlens.explain.evaluation.runner import parse_methods
    from lesionlens.training.architectures import get_spec
    from lesionlens.training.rundir import load_run

    spec = get_spec("resnet50")
    default, finer, composite = parse_methods(["crp", "crp@layer2", "crp:epsilon_shared@layer2"], spec, 0)
    assert (default.layer, finer.layer, composite.layer, composite.composite) == (None, "layer2", "layer2",
                                                                                   "epsilon_shared")
    for bad in ("crp@fc", "crp@layer9", "lrp@layer2", "gradient@layer2"):
        with pytest.raises(UsageError, match="layer"):
            parse_methods([bad], spec, 0)
    # crp-CHOICE: another concept choice, alone or with a composite and a layer
    distinct, both = parse_methods(["crp-distinct", "crp-distinct:epsilon_shared@layer3"], spec, 0)
    assert (distinct.kind, distinct.concept_choice, distinct.layer, default.concept_choice) == \
        ("crp", "distinct", None, None)
    assert (both.concept_choice, both.composite, both.layer) == ("distinct", "epsilon_shared", "layer3")
    for bad in ("crp-best", "lrp-distinct", "gradient-top"):
        with pytest.raises(UsageError, match="concept choice"):
            parse_methods([bad], spec, 0)
    model, _ = load_run(write_random_run(tmp_path / "run", "resnet50", size=64))
    explainer = distinct.open(model)
    assert explainer.concept_choice == "distinct"
    explainer.close()
    explainer = finer.open(model)
    try:
        assert explainer.layer == "layer2" and explainer.concept_choice == spec.concept_choice
        result = finer.compute(model, torch.rand(2, 3, 64, 64), torch.tensor([0, 1]), batch=2, explainer=explainer)
    finally:
        explainer.close()
    assert result.heatmaps.shape == (2, 64, 64) and result.concepts and len(result.concepts) == 2


def test_cli_writes_the_report_and_skips_a_bad_image(trained_run, synth_small, tmp_path):
    import csv
    import shutil

    # 13 images of synth_small (its CSV with the mask columns, cut down), one of them broken
    data = tmp_path / "data"
    with open(synth_small / "metadata.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))[:13]
    for row in rows:
        for name in [row["image"], row["lesion_mask"], row["artifact_mask"], *row["feature_masks"].split(";")]:
            if name:
                (data / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(synth_small / name, data / name)
    with open(data / "metadata.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    victim = data / rows[4]["image"]
    victim.write_bytes(b"not a png")
    out = tmp_path / "eval"
    # --n above the 13 images: every image is tried, so the bad one is met and skipped
    result = run_cli("explain-eval", str(trained_run), "--data", str(data), "--out", str(out), "--n", "50",
                     "--sensitivity-n", "2", "--methods", "lrp,crp,gradient,random", "--quiet")
    assert result.returncode == 1, result.stderr  # partial: one image skipped, the rest scored
    assert "Traceback" not in result.stderr and victim.name in result.stderr
    report = json.loads((out / "explain_eval.json").read_text())
    assert report["n"] == 12 and report["skipped_images"][0]["path"].endswith(victim.name)
    assert report["mask_problems"] == 0  # lesion, artifact and feature masks all read
    melanomas = sum(r["label"] == "melanoma" for i, r in enumerate(rows) if i != 4)
    assert report["feature_region_areas"]["images"] == melanomas > 0
    assert set(report["methods"]) == {"lrp", "crp", "gradient", "random"}
    lrp = report["methods"]["lrp"]["metrics"]
    for key in ("mass_accuracy_lesion", "rank_accuracy_lesion", "pointing_game_lesion", "total_sign_agrees",
                "class_spearman", "infidelity", "max_sensitivity"):
        ci = lrp[key]
        assert ci["n"] > 0 and ci["low"] <= ci["mean"] <= ci["high"], key
    assert lrp["infidelity"]["n"] == 2
    crp = report["methods"]["crp"]["metrics"]
    assert 0 <= crp["concept_abs_cosine"]["mean"] <= 1 and crp["layer_share_of_logit"]["n"] == 12
    # scored on the melanomas called melanoma only (the unit test above checks the numbers)
    assert crp["concept_purity"]["n"] <= melanomas and crp["concept_feature_kinds"]["n"] == crp["concept_purity"]["n"]
    assert len(report["methods"]["lrp"]["randomisation"]) > 1 and not report["methods"]["crp"]["randomisation"]
    md = (out / "explain_eval.md").read_text()
    assert "| mass_accuracy_lesion |" in md and "Randomisation" in md
    assert lrp["noise_floor"]["n"] == 12 and "noise_floor" not in crp  # CRP's map is LRP's
    assert "| nothing (input noise +-0.02: the floor) |" in md
    for png in report["plots"]:
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    # deterministic for a seed
    again = tmp_path / "again"
    run_cli("explain-eval", str(trained_run), "--data", str(data), "--out", str(again), "--n", "50",
            "--sensitivity-n", "2", "--methods", "lrp,crp,gradient,random", "--quiet")
    second = json.loads((again / "explain_eval.json").read_text())
    # up to float32 rounding: Max-Sensitivity differed in its 7th digit between two runs of the
    # same command (36.271076 vs 36.271080; torch's threaded float32 sums), every other number
    # was identical
    first, again = _flat(report["methods"]), _flat(second["methods"])
    numbers = {k for k, v in first.items() if isinstance(v, float)}
    assert {k: again[k] for k in numbers} == pytest.approx({k: first[k] for k in numbers}, rel=1e-5)
    assert {k: v for k, v in again.items() if k not in numbers} == {k: v for k, v in first.items() if k not in numbers}


def _flat(value, path: str = "") -> dict:
    """Nested dicts and lists from JSON as {path: leaf}, so pytest.approx can compare the numbers."""
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in _flat(item, f"{path}.{key}").items()}
    if isinstance(value, list):
        return {k: v for i, item in enumerate(value) for k, v in _flat(item, f"{path}[{i}]").items()}
    return {path: value}


def test_feature_regions_partition_the_melanoma_evidence(synth_small):
    """The four regions cover every pixel once; a map on the melanoma features scores 1 there, a
    flat map the region's area; benign images and melanomas called benign are not scored."""
    from lesionlens.data.preprocess import PreprocessSpec
    from lesionlens.explain.evaluation.data import load_eval_images
    from lesionlens.explain.evaluation.runner import (FEATURE_REGIONS, MethodScores, _feature_localisation,
                                                      feature_regions)

    classes = ["benign", "melanoma"]
    data = load_eval_images(synth_small, PreprocessSpec(size=64), classes, 60)
    assert feature_regions(data) is None  # no positive class known yet
    data.positive = 1
    scored, regions = feature_regions(data)
    assert tuple(regions) == FEATURE_REGIONS and scored.sum() == (data.labels == 1).sum() > 0
    assert np.array_equal(sum(m.astype(int) for m in regions.values()), np.ones_like(data.lesion_masks, int))
    assert regions["melanoma_features"][scored].any() and regions["artifact"][scored].any()
    targets = torch.ones(len(data.labels), dtype=torch.long)
    targets[0] = 0  # explained as benign: not scored
    on_features = regions["melanoma_features"].astype(float)
    flat = np.ones_like(on_features)
    for maps in (on_features, flat):
        scores = MethodScores("x")
        _feature_localisation(scores, maps, data, True, targets)
        share = {name: scores.per_image[f"feature_share_{name}"] for name in FEATURE_REGIONS}
        rows = scored & (targets.numpy() == 1) & regions["melanoma_features"].any((1, 2))
        assert np.isnan(share["skin"][~scored]).all() and np.isnan(share["skin"][0])
        if maps is on_features:
            assert np.allclose(share["melanoma_features"][rows], 1) and np.allclose(share["skin"][rows], 0)
        else:
            for name in FEATURE_REGIONS:
                assert np.allclose(share[name][rows], regions[name][rows].mean((1, 2)), atol=1e-6)
            assert np.allclose(sum(share[name][rows] for name in FEATURE_REGIONS), 1)


def test_concept_purity_is_the_share_on_the_best_feature_and_kinds_count_distinct_features(synth_small):
    """Concepts drawn exactly on one feature each are pure (1.0) and name as many kinds as there
    are different features; concepts that all cover the whole image score the largest feature's
    area and name one kind; images not explained as melanoma are not scored."""
    from lesionlens.data.preprocess import PreprocessSpec
    from lesionlens.explain.evaluation.data import load_eval_images
    from lesionlens.explain.evaluation.runner import MethodScores, _concept_purity, feature_regions
    from lesionlens.explain.methods import Concept, MethodResult

    data = load_eval_images(synth_small, PreprocessSpec(size=64), ["benign", "melanoma"], 60)
    data.positive = 1
    scored, _ = feature_regions(data)
    artifact = data.artifact_masks
    drawn = {name: masks & ~artifact for name, masks in data.feature_masks.items()}
    # melanomas with at least two features drawn outside the artifact
    rich = [i for i in np.nonzero(scored)[0] if sum(m[i].any() for m in drawn.values()) >= 2]
    assert rich
    targets = torch.ones(len(data.labels), dtype=torch.long)
    targets[rich[-1]] = 0  # explained as benign: not scored
    one_each, everywhere = [], []
    for i in range(len(data.labels)):
        present = [name for name, m in drawn.items() if m[i].any()][:2] or ["globules"]
        maps = [torch.from_numpy(drawn[name][i].astype(np.float32)) for name in present]
        one_each.append([Concept("layer", k, 0.1, heatmap=m) for k, m in enumerate(maps)])
        everywhere.append([Concept("layer", k, 0.1, heatmap=torch.ones(data.lesion_masks.shape[1:]))
                           for k in range(4)])
    logits = torch.zeros(len(data.labels), 2)
    for concepts, expect_pure in ((one_each, True), (everywhere, False)):
        scores = MethodScores("crp")
        result = MethodResult(heatmaps=torch.zeros(len(data.labels), 64, 64), logits=logits, targets=targets,
                              concepts=concepts)
        _concept_purity(scores, result, data, targets)
        purity, kinds = scores.per_image["concept_purity"], scores.per_image["concept_feature_kinds"]
        rows = rich[:-1]
        assert np.isnan(purity[~scored]).all() and np.isnan(purity[rich[-1]])
        if expect_pure:
            assert np.allclose(purity[rows], 1) and np.all(kinds[rows] == 2)
        else:
            largest = [max(m[i].mean() for m in list(drawn.values()) + [artifact]) for i in rows]
            assert np.allclose(purity[rows], largest, atol=1e-6) and np.all(kinds[rows] == 1)


def test_cli_rejects_unknown_methods_in_one_line(trained_run, synth_small, tmp_path):
    result = run_cli("explain-eval", str(trained_run), "--data", str(synth_small), "--out", str(tmp_path / "x"),
                     "--methods", "lrp:no_such_rules")
    assert result.returncode == 2 and "no_such_rules" in result.stderr and "Traceback" not in result.stderr
    result = run_cli("explain-eval", str(trained_run), "--data", str(synth_small), "--out", str(tmp_path / "x"),
                     "--methods", "attention")
    assert result.returncode == 2 and "attention" in result.stderr


def test_attention_crp_shares_add_up_to_the_region(tmp_path):
    """Local concept analysis inside the attention head's top region: with biases zeroed (so
    relevance is conserved below the concept layer) the heatmaps of all the layer's channels add
    up to the region's relevance at the layer, within 1%."""
    from conftest import write_random_run, zero_biases
    from lesionlens.explain import Explainer
    from lesionlens.training.rundir import load_run

    model, meta = load_run(write_random_run(tmp_path / "run", "attention_resnet50", size=64))
    model.train()
    with torch.no_grad():  # BatchNorm statistics from data, so activations do not vanish
        for _ in range(3):
            model(torch.randn(8, 3, 64, 64))
    model.eval()
    zero_biases(model)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with Explainer(model, "attention_crp", concepts=4, layer="backbone.layer3") as explainer:
        explanations = explainer.explain(x)
    for e in explanations:
        region = e.info["regions"]
        assert region.shape == (64, 64) and 0 < int(region.sum()) < 64 * 64
        # pushed to the input, the region's relevance arrives whole (conservation below the
        # layer), and each concept's heatmap carries its share of it: the shares of all channels
        # (of the region's |relevance|) sum to its sign by construction, so the concepts' heatmaps
        # add up to the region's relevance
        region_relevance = e.info["region_relevance"]
        assert abs(region_relevance) > 1e-3
        assert abs(float(e.heatmap.sum()) - region_relevance) <= 0.01 * abs(region_relevance)
        for c in e.concepts:
            part = c.relevance_share * abs(region_relevance)
            assert np.sign(c.relevance_share) == np.sign(float(c.heatmap.sum()))  # red is evidence for
            assert abs(float(c.heatmap.sum()) - part) <= 0.01 * abs(region_relevance), (c.channel, part)
        # ranked by |relevance inside the region|
        rel = np.abs([c.relevance_share for c in e.concepts])
        assert np.all(np.diff(rel) <= 1e-9)


def test_blockiness_sees_a_grid_at_the_stride_and_not_lesion_structure():
    import cv2

    rng = np.random.default_rng(0)
    noise = rng.standard_normal((6, 96, 96))
    smooth = np.stack([cv2.GaussianBlur(n, (0, 0), 4) for n in noise])
    disc = np.zeros((6, 96, 96))
    squares = np.zeros((6, 96, 96))
    for b in range(6):
        cv2.circle(disc[b], tuple(int(v) for v in rng.integers(30, 66, 2)), int(rng.integers(10, 25)), 1.0, -1)
        for _ in range(12):  # the flat rule's 7x7 squares at max-pool winners on a 4-px grid
            y, x = rng.integers(0, 23, 2) * 4
            squares[b, y:y + 7, x:x + 7] += rng.random()
    dots = np.zeros_like(smooth)
    dots[:, ::2, ::2] = np.clip(smooth[:, ::2, ::2], 0, None)  # a stride-2 stem's dot grid
    score = {name: metrics.blockiness(m, p).mean() for name, m, p in
             (("noise", noise, 4), ("smooth", smooth, 4), ("disc", disc, 4), ("squares", squares, 4), ("dots", dots, 2))}
    assert abs(score["noise"] - 1) < 0.1 and score["smooth"] < 1.0 and score["disc"] < 1.35
    assert score["squares"] > 1.45 and score["dots"] > 3
    assert np.isnan(metrics.blockiness(noise[:1, :90, :90], 4)).all()  # 4 does not divide 90


def test_stem_stride_is_the_grid_of_the_bottom_layers():
    from lesionlens.explain.input_grid import stem_stride
    from lesionlens.training.models import create_model

    assert stem_stride(create_model("resnet50", 2)) == 4  # 7x7 conv stride 2, then max-pool stride 2
    assert stem_stride(create_model("efficientnet_b0_relu", 2)) == 2


def test_maps_are_drawn_smoothed_over_the_input_grid_keeping_their_total_and_their_place():
    """render.display_map: the flat rule's squares and the stride-2 stem's dots (below the input
    grid, set by the rule, not the model) become blobs without moving the evidence."""
    import cv2

    from lesionlens.explain.render import display_map, smoothing_note

    rng = np.random.default_rng(1)
    squares = np.zeros((6, 96, 96), np.float32)
    for b in range(6):
        for _ in range(12):
            y, x = rng.integers(4, 21, 2) * 4
            squares[b, y:y + 7, x:x + 7] += rng.random()
    drawn = np.stack([display_map(m, 4) for m in squares])
    assert metrics.blockiness(squares, 4).mean() > 1.45 and metrics.blockiness(drawn, 4).mean() < 1.0
    assert np.allclose(drawn.reshape(6, -1).sum(1), squares.reshape(6, -1).sum(1), rtol=1e-3)
    # the evidence stays where it was: its centre of mass moves by less than a pixel
    ys, xs = np.mgrid[:96, :96]
    for a, b in zip(squares, drawn):
        assert abs((a * ys).sum() / a.sum() - (b * ys).sum() / b.sum()) < 1.0
        assert abs((a * xs).sum() / a.sum() - (b * xs).sum() / b.sum()) < 1.0
    smooth = cv2.GaussianBlur(rng.standard_normal((96, 96)).astype(np.float32), (0, 0), 4)
    dots = np.zeros((1, 96, 96), np.float32)
    dots[0, ::2, ::2] = np.clip(smooth[::2, ::2], 0, None)
    # the dot grid: its power at the stride's harmonic (Nyquist) falls to a 1000th of the map's;
    # blockiness, a ratio to the bins beside, stays near 2 there (both are nearly empty)
    def on_grid(m):
        power = np.abs(np.fft.fft2(m - m.mean())) ** 2
        return (power[48].sum() + power[:, 48].sum()) / power.sum()

    assert metrics.blockiness(dots, 2)[0] > 3 and on_grid(dots[0]) > 0.3
    assert on_grid(display_map(dots[0], 2)) < 1e-3
    one = squares[0]
    assert display_map(one, None) is one and display_map(one, 1) is one
    assert "4-px input grid" in smoothing_note(4) and smoothing_note(None) == ""


def test_a_gradient_is_drawn_as_its_magnitude_smoothed_and_a_signed_map_as_it_is():
    """explain-eval's "as drawn" scores: a checkerboard of +-1 (a gradient's alternating signs) is
    all evidence as |map|, smoothed; smoothing the signed map would cancel it to nothing."""
    from lesionlens.explain.evaluation.runner import as_drawn

    board = np.where(np.add.outer(np.arange(32), np.arange(32)) % 2 == 0, 1.0, -1.0).astype(np.float32)[None]
    unsigned, signed = as_drawn(board, False, 4), as_drawn(board, True, 4)
    assert np.allclose(unsigned, 1.0, atol=1e-3) and np.abs(signed).max() < 0.05
    assert np.array_equal(as_drawn(board, True, 1), board)  # no grid: drawn as computed


def test_figures_draw_relevance_smoothed_and_say_so_while_gradcam_is_drawn_as_it_is():
    from lesionlens.explain.api import Explanation
    from lesionlens.explain.files import figure_for

    rgb = np.full((96, 96, 3), 128, np.uint8)  # plain: only the overlay changes along a row
    heatmap = np.zeros((96, 96), np.float32)
    heatmap[40:47, 40:47] = 1.0
    prediction = {"label": "melanoma", "index": 1, "probabilities": {"benign": 0.2, "melanoma": 0.8}}
    lrp = Explanation(heatmap, "lrp", 1, "melanoma", prediction, info={"input_grid": 4})
    cam = Explanation(heatmap, "gradcam", 1, "melanoma", prediction, info={"input_grid": 4})
    raw = Explanation(heatmap, "lrp", 1, "melanoma", prediction, info={})
    smoothed, plain, unsmoothed = figure_for(lrp, rgb), figure_for(cam, rgb), figure_for(raw, rgb)
    # the bar has one more line for the smoothing note; Grad-CAM's and an unknown grid's do not
    assert smoothed.shape[0] == unsmoothed.shape[0] + 14 and plain.shape[0] <= unsmoothed.shape[0]
    # the overlay: the smoothed square's edge is soft, the raw one's sharp
    from lesionlens.explain.render import READABLE, figure

    bodies = [figure(rgb, heatmap, title="t", target_label="melanoma", grid=g)[24:24 + READABLE, READABLE + 8:]
              for g in (4, None)]
    row = READABLE * 43 // 96  # a row through the square
    soft, sharp = (np.abs(np.diff(b[row].astype(int), axis=0)).max() for b in bodies)
    assert soft < sharp


def test_the_model_card_shows_each_methods_noise_floor_beside_its_randomisation(tmp_path):
    """A randomisation number means something only below the method's noise floor: the card
    puts them side by side (a method without a floor, CRP, shows a dash)."""
    from lesionlens.demo.model_card import explain_eval_table

    def ci(mean):
        return {"mean": mean, "low": mean - 0.01, "high": mean + 0.01, "n": 4}

    report = {"n": 4, "methods": {
        "lrp": {"metrics": {"noise_floor": ci(0.83), "mass_accuracy_lesion": ci(0.5)},
                "randomisation": [{"stage": "head", "abs": ci(0.9)}, {"stage": "top", "abs": ci(0.81)}]},
        "crp": {"metrics": {"concept_abs_cosine": ci(0.96)}, "randomisation": []}}}
    path = tmp_path / "explain_eval.json"
    path.write_text(json.dumps(report))
    rows = explain_eval_table(path)
    header = [cell.strip() for cell in rows[0].strip("|").split("|")]
    lrp = [cell.strip() for cell in next(r for r in rows if r.startswith("| lrp")).strip("|").split("|")]
    crp = [cell.strip() for cell in next(r for r in rows if r.startswith("| crp")).strip("|").split("|")]
    assert lrp[header.index("randomisation_top")] == "0.81 [0.80, 0.82]"
    assert lrp[header.index("noise_floor")] == "0.83 [0.82, 0.84]"
    assert crp[header.index("noise_floor")] == "-" and "noise_floor" in rows[-1]
