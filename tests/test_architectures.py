"""One spec per architecture: every layer asks the spec, so a fourth architecture is one spec
away (a toy CNN registered here goes through train -> export -> explain)."""

import numpy as np
import pytest
import torch
from torch import nn

from lesionlens.errors import ExplainError, UsageError
from lesionlens.training.architectures import ArchitectureSpec, TrainingRecipe, get_spec, register, unregister


class ToyNet(nn.Module):
    def __init__(self, num_classes: int):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(16, num_classes)

    def forward(self, x):
        return self.head(self.pool(self.features(x)).flatten(1))


@pytest.fixture
def toy_arch():
    spec = register(ArchitectureSpec(
        name="toy_cnn", build=lambda n, imagenet: ToyNet(n),
        recipe=TrainingRecipe(epochs=2, image_size=32, batch_size=16, lr=3e-3, weight_decay=0.0, warmup_epochs=0.5),
        classifier="head", gradcam_layer="features", concept_layers=("features.3",)))
    yield spec
    unregister("toy_cnn")


def test_a_registered_toy_architecture_trains_exports_and_explains(toy_arch, synth_small, tmp_path):
    from lesionlens.explain import Explainer
    from lesionlens.export import export_run
    from lesionlens.runtime import Classifier
    from lesionlens.training import TrainConfig, load_run, train

    run = train(TrainConfig(data=str(synth_small / "metadata.csv"), arch="toy_cnn", out=str(tmp_path / "run"),
                            progress=False, workers=0))
    model, meta = load_run(run)
    assert meta.arch == "toy_cnn" and meta.preprocessing.size == 32  # the recipe's image size
    assert meta.config["epochs"] == 2 and meta.config["lr"] == 3e-3
    export_run(run, tmp_path / "onnx")
    image = next((synth_small / "melanoma").glob("*.png"))
    prediction = Classifier(tmp_path / "onnx" / "model.onnx").predict([image])[0]
    assert prediction.ok
    x = torch.randn(2, 3, 32, 32)
    for method in toy_arch.methods:
        options = {"concepts": 4} if method == "crp" else {}
        with Explainer(model, method, classes=meta.classes, **options) as explainer:
            explanations = explainer.explain(x)
        assert all(e.heatmap.shape == (32, 32) and np.isfinite(e.heatmap).all() for e in explanations)
    assert "attention" not in toy_arch.methods
    with pytest.raises(ExplainError, match="attention head"):
        Explainer(model, "attention")


def test_specs_name_every_layer_the_other_layers_need():
    from lesionlens.training import ARCHITECTURES, create_model

    assert set(ARCHITECTURES) >= {"resnet50", "attention_resnet50", "efficientnet_b0_relu"}
    for arch in ("resnet50", "attention_resnet50", "efficientnet_b0_relu"):
        spec = get_spec(arch)
        model = create_model(arch, 2)
        assert isinstance(model.get_submodule(spec.classifier), nn.Linear)
        for path in (spec.gradcam_layer, *spec.concept_layers) + ((spec.attention,) if spec.attention else ()):
            model.get_submodule(path)  # raises if the spec names a layer the model lacks
    with pytest.raises(UsageError, match="unknown architecture"):
        get_spec("vgg16")
    with pytest.raises(UsageError, match="already registered"):
        register(get_spec("resnet50"))


def test_explainer_options_are_explicit_and_the_model_is_restored():
    from lesionlens.explain import Explainer, explain
    from lesionlens.training import create_model

    model = create_model("resnet50", 2).eval()
    x = torch.randn(3, 32, 32)
    with pytest.raises(TypeError):
        explain(model, x, method="crp", concept=3)  # a typo is an error, not 8 silent concepts
    with pytest.raises(ExplainError, match="do not apply to method 'lrp'"):
        explain(model, x, method="lrp", concepts=3)
    with pytest.raises(ExplainError, match="concepts must be"):
        explain(model, x, method="crp", concepts=0)
    with pytest.raises(ExplainError, match="no layer"):
        explain(model, x, method="crp", layer="layer9")
    with pytest.raises(ExplainError, match="unknown engine"):
        explain(model, x, method="lrp", engine="turbo")
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with Explainer(model, "lrp") as explainer:  # its own copy: the caller's model is untouched
        assert explainer.model is not model
        assert not any("forward" in vars(m) for m in model.modules())
        first = explainer.explain(x)[0].heatmap
        assert np.allclose(explainer.explain(x)[0].heatmap, first)  # prepared once, reused
    with pytest.raises(ExplainError, match="closed"):
        explainer.explain(x)
    in_place = Explainer(model, "crp", concepts=2, copy=False)
    assert any("forward" in vars(m) for m in model.modules())  # prepared in place ...
    in_place.close()
    assert not any("forward" in vars(m) for m in model.modules())  # ... and restored exactly
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


def test_light_modules_stay_light():
    """The sidecar's service module, the specs, the run contract and the CLI parser load
    without torch (the sidecar validates a run before torch is needed; --help is instant)."""
    from conftest import assert_runs_without_heavy_imports

    assert_runs_without_heavy_imports(
        "import lesionlens.explain, lesionlens.sidecar.service, lesionlens.training.architectures, "
        "lesionlens.training.rundir, lesionlens.training.config, lesionlens.errors, lesionlens._io; "
        "from lesionlens.cli import build_parser; build_parser()")


def test_lrp_and_crp_can_share_one_prepared_copy():
    from lesionlens.explain import Explainer

    model = __import__("lesionlens.training", fromlist=["create_model"]).create_model("resnet50", 2).eval()
    x = torch.randn(1, 3, 32, 32)
    lrp = Explainer(model, "lrp")
    crp = Explainer(model, "crp", concepts=2, share=lrp)
    assert crp.model is lrp.model and lrp.model is not model
    alone = Explainer(model, "crp", concepts=2)
    assert np.allclose(crp.explain(x)[0].heatmap, alone.explain(x)[0].heatmap, atol=1e-6)
    assert np.allclose(crp.explain(x)[0].heatmap, lrp.explain(x)[0].heatmap, atol=1e-6)  # same full map
    with pytest.raises(ExplainError, match="share"):
        Explainer(model, "crp", engine="zennit", share=lrp)
    lrp.close()
    with pytest.raises(ExplainError, match="closed"):
        crp.explain(x)
    alone.close()


def test_only_the_cli_and_the_demo_import_the_sidecar():
    """The sidecar is a deployment unit over explain + runtime: nothing below it imports it."""
    import ast

    from conftest import ROOT

    package = ROOT / "lesionlens"
    offenders = []
    for path in package.rglob("*.py"):
        relative = path.relative_to(package)
        if relative.parts[0] in ("sidecar", "demo") or relative.name == "cli.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any("sidecar" in name.split(".") for name in names):
                offenders.append(str(relative))
    assert not offenders, offenders
