"""Every architecture learns with its own recipe (its spec's lr, epochs, batch, weight decay,
warm-up; 64 px for CPU time), on two classes and on the four-class set the original team's
3-class dataset never trained on: held-out ROC-AUC >= 0.85 on a separately generated set, scored
by `evaluate` with an unreadable file among the binary set's images (named, skipped, exit 1)."""

import json

import pytest

from conftest import run_cli
from lesionlens.explain.rules import without_stabiliser

ARCHES = ("resnet50", "attention_resnet50", "efficientnet_b0_relu")
FOUR = "nevus,melanoma,seborrheic_keratosis,bcc"


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    from lesionlens.data.synth import generate

    root = tmp_path_factory.mktemp("learning")
    sets = {}
    for name, classes, seed in (("binary", ("benign", "melanoma"), 30), ("four", tuple(FOUR.split(",")), 40)):
        generate(root / name / "train", n=800, size=64, seed=seed, classes=classes, progress=False)
        generate(root / name / "heldout", n=300, size=64, seed=seed + 1, classes=classes, progress=False)
        sets[name] = root / name
    (root / "binary" / "heldout" / "melanoma" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    return sets


@pytest.mark.slow
@pytest.mark.parametrize("classes", ["binary", "four"])
@pytest.mark.parametrize("arch", ARCHES)
def test_every_architecture_learns_with_its_recipe(datasets, arch, classes, tmp_path):
    from lesionlens.training.architectures import get_spec

    data = datasets[classes]
    run = tmp_path / "run"
    result = run_cli("train", "--data", str(data / "train" / "metadata.csv"), "--arch", arch, "--out", str(run),
                     "--image-size", "64", "--quiet", timeout=1800)
    assert result.returncode == 0, result.stderr[-2000:]
    config = json.loads((run / "model.json").read_text())["config"]
    recipe = get_spec(arch).recipe
    assert (config["lr"], config["epochs"]) == (recipe.lr, recipe.epochs)  # the recipe, not a flag
    out = tmp_path / "heldout.json"
    result = run_cli("evaluate", str(run), "--data", str(data / "heldout"), "--out", str(out), "--quiet")
    held = json.loads(out.read_text())
    print(f"{arch} {classes}: held-out ROC-AUC {held['roc_auc']:.3f} (n={held['n']})")
    assert held["roc_auc"] >= 0.85, held["roc_auc"]
    if classes == "binary":
        assert result.returncode == 1, result.stderr[-2000:]  # one unreadable file: partial
        assert "broken.png" in result.stderr
        assert held["n"] == 300 and held["skipped_unreadable"] == 1
        # the ISIC challenge's numbers ride along; for two classes its AUC is the positive class's
        isic = held["isic"]
        assert isic["per_class"]["melanoma"]["auc"] == pytest.approx(held["positive_roc_auc"])
        assert 0.18 < isic["partial_auc_above_80_sensitivity"] <= 1 and 0.5 < isic["balanced_multiclass_accuracy"] <= 1
        _pin_explanation_quality(run, data / "heldout", arch)
    else:
        assert result.returncode == 0, result.stderr[-2000:]


def _pin_explanation_quality(run, heldout, arch):
    """The chosen defaults against the rules they replaced (EpsilonPlusFlat: z+ everywhere), on
    the same trained model and images. On the ResNets: the default LRP map moves more when the
    top stage and the head are re-initialised, and beyond its own noise floor (the same image
    with imperceptible noise: a map that moves only as much as under noise shows noise, not the
    model); the default's top-8 CRP concept heatmaps are more distinct (at the default concept
    layer); the heatmap's total has the logit's sign (the rules conserve). On EfficientNet at
    this size (64 px: `blocks.6` is 2x2) no rule's map depends on the top stage and head beyond
    its noise floor, and every rule's concepts are copies (measured with the default
    zplus_epsilon4_shared(_input)+epsilon_std=0.1: 0.985 against its floor 0.984; with epsilon 1e-6 alone
    0.75 against 0.54; EpsilonPlusFlat 1.00 against 1.00); what its default brings is stability:
    a map that noise does not move, and a total with the logit's sign. Measured at 96 px:
    docs/explanation-choice.md."""
    import numpy as np

    from lesionlens.explain.evaluation.data import load_eval_images
    from lesionlens.explain.evaluation.runner import evaluate_methods, parse_methods
    from lesionlens.training.models import spec_of_model
    from lesionlens.training.rundir import load_run

    model, meta = load_run(run)
    data = load_eval_images(heldout, meta.preprocessing, meta.classes, 32)
    default = spec_of_model(model).composite
    # the default's rules with zennit's epsilon (1e-6) alone: what EfficientNet's stabiliser replaced
    unstabilised = "lrp:" + without_stabiliser(default)
    names = ["lrp", "crp", "lrp:epsilon_plus_flat", "crp:epsilon_plus_flat"]
    names += [unstabilised] if unstabilised != "lrp:" + default else []
    scores = evaluate_methods(model, data, parse_methods(names, spec_of_model(model), 0), sensitivity_n=0)
    lrps = [n for n in names if n.startswith("lrp")]
    moved = {n: float(np.mean(scores[n].randomisation[1]["abs"])) for n in lrps}
    floor = {n: float(np.mean(scores[n].per_image["noise_floor"])) for n in lrps}
    distinct = {n: float(np.nanmean(scores[n].per_image["concept_abs_cosine"])) for n in ("crp", "crp:epsilon_plus_flat")}
    sign = float(np.mean(scores["lrp"].per_image["total_sign_agrees"]))
    print(f"{arch}: |map| Spearman after top stage + head randomised {moved}, noise floor {floor}, "
          f"CRP top-8 mean |cos| {distinct}, total with the logit's sign {sign:.3f}")
    assert sign >= 0.95, sign
    if arch == "efficientnet_b0_relu":
        assert floor["lrp"] >= 0.98 and floor["lrp"] > floor[unstabilised] + 0.01, floor
        return
    assert moved["lrp"] < moved["lrp:epsilon_plus_flat"] - 0.02, moved
    assert moved["lrp"] < floor["lrp"] - 0.02, (moved, floor)
    assert distinct["crp"] < distinct["crp:epsilon_plus_flat"] - 0.02, distinct
