"""One registered spec per architecture (timm's `default_cfg` idea): everything the other layers
need to know about a model lives here, so no layer guesses with `hasattr` or compares names.

Adding an architecture means writing one `ArchitectureSpec` and calling `register(spec)`.
Torch-free at import (builders import timm inside), so the CLI's `--help` and choices are fast.

Module paths (`classifier`, `gradcam_layer`, `concept_layers`, `attention`) are dotted names for
`model.get_submodule`. `canonizers` names entries of `lesionlens.explain.canonizers.CANONIZERS`
(the structural ones; BatchNorm merging and in-place activations are added for every model),
and `composite` names an LRP recipe of `lesionlens.explain.rules.RECIPES`: the explain layer owns
the zennit objects, this spec only says which ones apply.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Callable, Optional

from ..errors import UsageError


@dataclass(frozen=True)
class TrainingRecipe:
    """Defaults for `lesionlens train` (each overridable by its flag). Chosen for training from
    scratch on the synthetic data offline; see the README for ImageNet fine-tuning."""

    epochs: int = 10
    image_size: int = 224
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))


@dataclass(frozen=True)
class ArchitectureSpec:
    name: str
    build: Callable[[int, bool], object]  # (num_classes, imagenet weights?) -> nn.Module
    recipe: TrainingRecipe
    classifier: str  # the final nn.Linear
    gradcam_layer: str  # the last convolutional feature map
    concept_layers: tuple[str, ...]  # CRP layers; the first is the default
    canonizers: tuple[str, ...] = ()
    # the LRP recipe (explain/rules.py) and, in concept_layers, the CRP layers: chosen with
    # explain-eval, docs/explanation-choice.md says why
    composite: str = "epsilon_plus_flat"
    concept_choice: str = "top"  # which channels CRP shows (explain/concept_choice.py)
    # bottom-up, "a+b" for several modules; the last entry is the head. Randomisation checks
    # cascade through them from the top; LRP recipes place their "upper" rules by them.
    stages: tuple[str, ...] = ()
    attention: Optional[str] = None  # the attention-pooling module, when the model has one
    description: str = ""

    @property
    def default_concept_layer(self) -> str:
        return self.concept_layers[0]

    @property
    def methods(self) -> tuple[str, ...]:
        """The explanation methods this architecture supports."""
        return ("lrp", "crp", "gradcam") + (("attention", "attention_crp") if self.attention else ())


REGISTRY: dict[str, ArchitectureSpec] = {}


def register(spec: ArchitectureSpec, replace_existing: bool = False) -> ArchitectureSpec:
    if spec.name in REGISTRY and not replace_existing:
        raise UsageError(f"architecture {spec.name!r} is already registered")
    if not spec.concept_layers:
        raise UsageError(f"architecture {spec.name!r}: at least one CRP concept layer is needed")
    REGISTRY[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    REGISTRY.pop(name, None)


def architectures() -> list[str]:
    return list(REGISTRY)


def get_spec(name: str) -> ArchitectureSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        raise UsageError(f"unknown architecture {name!r}; choose one of {architectures()}") from None


# ---- the built-in three -----------------------------------------------------------------------

def _build_resnet50(num_classes: int, imagenet: bool):
    import timm

    return timm.create_model("resnet50", pretrained=imagenet, num_classes=num_classes)


def _build_attention_resnet50(num_classes: int, imagenet: bool):
    import timm

    from .models import AttentionResNet

    backbone = timm.create_model("resnet50", pretrained=imagenet, num_classes=0, global_pool="")
    return AttentionResNet(backbone, num_classes)


def _build_efficientnet_b0_relu(num_classes: int, imagenet: bool):
    import timm

    # ImageNet weights were learnt with SiLU; they still load (same shapes) and fine-tune from
    # there, but expect a few epochs before the ReLU network catches up.
    return timm.create_model("efficientnet_b0", pretrained=imagenet, num_classes=num_classes, act_layer="relu")


# both ResNet50 variants train the same way
RESNET_RECIPE = TrainingRecipe(epochs=10, image_size=224, batch_size=32, lr=1e-3, weight_decay=0.05, warmup_epochs=1.0)

register(ArchitectureSpec(
    name="resnet50",
    build=_build_resnet50,
    recipe=RESNET_RECIPE,
    classifier="fc",
    gradcam_layer="layer4",
    # layer2 first: at 96 px its concepts are purer, span more feature kinds and are more distinct
    # than layer3's (200 held-out images, docs/explanation-choice.md)
    concept_layers=("layer2", "layer3", "layer4"),
    # distinct concepts: its top channels by relevance are near-copies of one spot (top-8 |cos|
    # 0.44, 1.78 feature kinds in the top 4); "distinct" 0.32 and 2.08, purity 0.39 -> 0.36 with
    # CIs overlapping (200 held-out images, docs/explanation-choice.md)
    concept_choice="distinct",
    canonizers=("timm_resnet",),
    # epsilon with biases shared by the inputs' |values| (not |x w|): the same maps as
    # epsilon_shared (200 held-out images: every explain-eval measure within 0.004, per-image
    # cosine 1 - 5e-6) without its |W||x| convolution per layer: 0.96x a full gradient, 1.31x
    # with "share" in the same run (docs/explanation-choice.md, "Biases shared by the inputs' size")
    composite="epsilon_shared_input",
    stages=("conv1+bn1", "layer1", "layer2", "layer3", "layer4", "fc"),
    description="timm ResNet50",
))

register(ArchitectureSpec(
    name="attention_resnet50",
    build=_build_attention_resnet50,
    recipe=RESNET_RECIPE,
    classifier="classifier",
    gradcam_layer="backbone.layer4",
    concept_layers=("backbone.layer2", "backbone.layer3", "backbone.layer4"),  # as ResNet50's
    # the top concepts, not ResNet50's distinct ones: "distinct" would cost its purity (0.69 -> 0.53,
    # CIs apart) and meet neither of the goals it moves (|cos| 0.61 -> 0.42, kinds 1.31 -> 1.77)
    canonizers=("timm_resnet", "gated_attention"),
    composite="epsilon_shared_input",  # as ResNet50's
    attention="pool",
    stages=("backbone.conv1+backbone.bn1", "backbone.layer1", "backbone.layer2", "backbone.layer3",
            "backbone.layer4", "pool+classifier"),
    description="ResNet50 features + gated attention pooling (Ilse et al. 2018)",
))

register(ArchitectureSpec(
    name="efficientnet_b0_relu",
    build=_build_efficientnet_b0_relu,
    # From scratch it optimises far slower than ResNet50: with ResNet50's recipe its training loss
    # stays near 0.6-0.7 for most of the run. Not the ReLU swap (SiLU: same), weight decay, batch
    # size, resolution or BN statistics (re-estimated: +0.005). It needs a 10x learning rate, a
    # longer warm-up (at lr 1e-2 the first epochs are unstable without it) and more steps.
    # Measurements in the README.
    recipe=TrainingRecipe(epochs=30, image_size=224, batch_size=32, lr=1e-2, weight_decay=0.05, warmup_epochs=3.0),
    classifier="classifier",
    gradcam_layer="bn2",  # conv_head + BatchNormAct (ReLU): the last feature map
    concept_layers=("blocks.5", "blocks.6", "blocks.4"),
    canonizers=("timm_efficientnet",),
    # epsilon in the top four stages with a stabiliser of 10% of each layer's output std, not
    # zennit's 1e-6 alone: with 1e-6 a noise of +-0.02 changed the map as much as re-initialising
    # the head, and the depthwise convolutions of blocks.5 are where (docs/explanation-choice.md,
    # "EfficientNet: a stable epsilon"). Four stages, not two (with 1%): on 200 images the
    # screening never saw, 0.77 of the evidence on the melanoma features (0.66), concept purity
    # 0.66 (0.51), a map that depends on blocks.4-2 (0.87-0.73 after their randomisation, 0.98-0.90),
    # as stable (Max-Sensitivity 0.15 against 0.14) ("EfficientNet: epsilon in four stages").
    # Biases shared by the inputs' |values|, as on the ResNets: the same maps (every explain-eval
    # measure within its CI, per-image cosine 1 - 7e-4), no |W||x| convolution (1.07x a full
    # gradient, 1.26x with "share")
    composite="zplus_epsilon4_shared_input+epsilon_std=0.1",
    stages=("conv_stem+bn1",) + tuple(f"blocks.{i}" for i in range(7)) + ("conv_head+bn2+classifier",),
    description="timm EfficientNet-B0 with ReLU for SiLU (LRP's rules assume piecewise-linear activations)",
))
