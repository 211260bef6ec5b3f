"""Which LRP rule each layer gets: named recipes and their assignment to a model's modules.

A recipe says, by position in the network, which rule a layer gets: the input layer, the
convolutions of the lower stages, those of the upper stages and the head, depthwise
convolutions, dense layers, and whether the rules see the biases. The architecture spec names
its recipe (`ArchitectureSpec.composite`) and lists its stages bottom-up (`ArchitectureSpec.stages`),
so "upper" means the same thing to every architecture. One assignment feeds both engines:
zennit's hooks (lrp.py, the reference) and the fast engine (fast_lrp.py), so they apply the
same rule to the same module (tested).

Why recipes and not one composite: explain-eval measured the candidates (docs/explanation-choice.md).
z+ everywhere (EpsilonPlusFlat) converges to one map whatever the upper layers do (Sixt et al.
2020): it fails the randomisation check and makes every CRP concept the same picture. The
layer-wise recipe of Montavon et al. 2019 (epsilon above, gamma below) keeps the upper layers'
say; `bias=False` stops the merged BatchNorm shifts from swallowing the relevance, so a
heatmap's total is the logit and its sign the logit's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from ..errors import ExplainError

RULE_KINDS = ("flat", "zplus", "epsilon", "gamma", "alpha2beta1")


@dataclass(frozen=True)
class Rule:
    kind: str
    # what happens to the share of relevance a bias takes: "absorb" (zennit's rules: it is lost),
    # "ignore" (the rule reads the bias as 0; exact conservation, but unstable where the
    # bias-free sum is near 0), "share" (the bias's part goes back to the inputs in proportion
    # to their |contribution|: conserved, and the denominator stays the layer's real output)
    bias: str = "absorb"
    gamma: float = 0.25
    epsilon: float = 1e-6


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    first: str = "flat"  # the first layer (the input)
    lower: str = "zplus"  # convolutions below the upper stages
    upper: str = "zplus"  # convolutions of the top `upper_stages` feature stages and of the head
    upper_stages: int = 0
    depthwise: Optional[str] = None  # depthwise convolutions (None: as their stage)
    dense: str = "epsilon"  # linear layers and the attention pooling
    bias: str = "absorb"
    gamma: float = 0.25
    epsilon: float = 1e-6
    tags: tuple[str, ...] = field(default=())

    def rule(self, kind: str) -> Rule:
        return Rule(kind, bias=self.bias, gamma=self.gamma, epsilon=self.epsilon)


RECIPES: dict[str, Recipe] = {}


BIAS_MODES = ("absorb", "ignore", "share")


def _add(recipe: Recipe) -> None:
    if recipe.bias not in BIAS_MODES:
        raise ValueError(f"recipe {recipe.name}: bias must be one of {BIAS_MODES}")
    for kind in (recipe.first, recipe.lower, recipe.upper, recipe.dense, recipe.depthwise):
        if kind is not None and kind not in RULE_KINDS:
            raise ValueError(f"recipe {recipe.name}: unknown rule {kind!r}")
    RECIPES[recipe.name] = recipe


_add(Recipe("epsilon_plus_flat", "zennit's EpsilonPlusFlat: flat input, z+ convolutions, epsilon dense"))
_add(Recipe("epsilon_gamma_flat", "zennit's EpsilonGammaBox with flat at the input (the box rule needs "
            "the preprocessing's bounds): gamma 0.25 convolutions, epsilon dense", lower="gamma", upper="gamma"))
_add(Recipe("epsilon_alpha2_beta1_flat", "zennit's EpsilonAlpha2Beta1Flat: alpha2-beta1 convolutions",
            lower="alpha2beta1", upper="alpha2beta1"))
_add(Recipe("layered", "Montavon et al. 2019: epsilon in the top two feature stages and the head, "
            "gamma 0.25 below, flat input", lower="gamma", upper="epsilon", upper_stages=2))
_add(Recipe("layered3", "as layered, epsilon in the top three feature stages", lower="gamma", upper="epsilon",
            upper_stages=3))
_add(Recipe("epsilon", "epsilon on every convolution and dense layer (flat input)", lower="epsilon", upper="epsilon"))
_add(Recipe("layered_dw_epsilon", "layered with epsilon on depthwise convolutions", lower="gamma", upper="epsilon",
            upper_stages=2, depthwise="epsilon"))
_add(Recipe("layered_nobias", "as layered, every rule ignoring biases", lower="gamma", upper="epsilon",
            upper_stages=2, bias="ignore"))
_add(Recipe("epsilon_nobias", "epsilon on every convolution and dense layer, ignoring biases",
            lower="epsilon", upper="epsilon", bias="ignore"))
_add(Recipe("layered_dw_epsilon_nobias", "layered_nobias with epsilon on depthwise convolutions",
            lower="gamma", upper="epsilon", upper_stages=2, depthwise="epsilon", bias="ignore"))
_add(Recipe("epsilon_plus_flat_nobias", "EpsilonPlusFlat ignoring biases", bias="ignore"))
_add(Recipe("layered_shared", "as layered, each bias's relevance shared back to the inputs", lower="gamma",
            upper="epsilon", upper_stages=2, bias="share"))
_add(Recipe("layered3_shared", "as layered3, biases shared", lower="gamma", upper="epsilon", upper_stages=3,
            bias="share"))
_add(Recipe("epsilon_shared", "epsilon everywhere, biases shared", lower="epsilon", upper="epsilon", bias="share"))
_add(Recipe("zplus_epsilon2_shared", "epsilon in the top two feature stages and the head, z+ below (its "
            "bias-free sums are >= 0: stable), flat input; biases shared", upper="epsilon", upper_stages=2,
            bias="share"))
_add(Recipe("zplus_epsilon4_shared", "as zplus_epsilon2_shared with epsilon in the top four feature stages",
            upper="epsilon", upper_stages=4, bias="share"))
_add(Recipe("layered_dw_epsilon_shared", "layered_shared with epsilon on depthwise convolutions",
            lower="gamma", upper="epsilon", upper_stages=2, depthwise="epsilon", bias="share"))


def get_recipe(name: str) -> Recipe:
    try:
        return RECIPES[name]
    except KeyError:
        raise ExplainError(f"unknown LRP composite {name!r}; known: {sorted(RECIPES)}") from None


def stage_modules(stages: tuple[str, ...]) -> list[tuple[str, ...]]:
    """The spec's stages (bottom-up, "a+b" for several modules in one stage) as name tuples."""
    return [tuple(part for part in entry.split("+") if part) for entry in stages]


def _stage_of(name: str, stages: list[tuple[str, ...]]) -> Optional[int]:
    for index, prefixes in enumerate(stages):
        if any(name == p or name.startswith(p + ".") for p in prefixes):
            return index
    return None


def assign_rules(model, recipe: Recipe) -> dict[str, Rule]:
    """{module name: Rule} for every convolution and linear layer of `model` (named as in
    `model.named_modules()`). The first of them is the input layer; a convolution's stage
    decides upper or lower; the head (the spec's last stage) counts as upper."""
    from torch import nn

    from ..training.models import spec_of_model

    spec = spec_of_model(model)
    stages = stage_modules(spec.stages)
    if not stages and recipe.upper_stages:
        raise ExplainError(f"recipe {recipe.name!r} needs the stages of {spec.name} (ArchitectureSpec.stages)")
    top = len(stages) - 1  # the head
    rules: dict[str, Rule] = {}
    first = True
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            rules[name] = recipe.rule(recipe.dense)
        elif isinstance(module, nn.Conv2d):
            if first:
                rules[name] = recipe.rule(recipe.first)
            elif recipe.depthwise and module.groups > 1 and module.groups == module.in_channels:
                rules[name] = recipe.rule(recipe.depthwise)
            else:
                stage = _stage_of(name, stages)
                upper = stage is not None and stage >= top - recipe.upper_stages
                rules[name] = recipe.rule(recipe.upper if upper else recipe.lower)
        else:
            continue
        first = False
    return rules
