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

What a person sees is decided at the bottom: the input layer's rule and the stem's max-pool.
The flat rule spreads each stem unit's relevance evenly over its receptive field (7x7 squares on
ResNet50, a dot grid at the stride on EfficientNet), and winner-takes-all max-pooling sends a
window's relevance to one position, so the map is a scatter of squares. A recipe name takes
modifiers for both, `RECIPE+first=RULE+maxpool=proportional` (get_recipe), so explain-eval can
measure every combination (docs/explanation-choice.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Optional

from ..errors import ExplainError

RULE_KINDS = ("flat", "zplus", "epsilon", "gamma", "alpha2beta1", "wsquare", "zbox")
FIRST_ONLY = ("wsquare", "zbox")  # rules for the input layer (w^2 ignores the input; z-box needs its bounds)
MAXPOOL_MODES = ("winner", "proportional")


@dataclass(frozen=True)
class Rule:
    kind: str
    # what happens to the share of relevance a bias takes: "absorb" (zennit's rules: it is lost),
    # "ignore" (the rule reads the bias as 0; exact conservation, but unstable where the
    # bias-free sum is near 0), "share" (the bias's part goes back to the inputs in proportion
    # to their |contribution|: conserved, and the denominator stays the layer's real output),
    # "share_input" (as "share", in proportion to each input's |value| alone: conserved too, and
    # it needs no |W||x| convolution, the rule's one extra convolution per layer)
    bias: str = "absorb"
    gamma: float = 0.25
    epsilon: float = 1e-6
    # with biases shared, a convolution's stabiliser is epsilon + epsilon_std x the standard
    # deviation of one image's outputs of the layer (lrp.layer_epsilon): scale-free, so the same
    # value means the same on models whose activations differ in size
    epsilon_std: float = 0.0
    # z-box: the lowest and highest normalised input per RGB channel (input_bounds)
    bounds: Optional[tuple[tuple[float, ...], tuple[float, ...]]] = None


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
    epsilon_std: float = 0.0  # Rule.epsilon_std
    # max-pooling: "winner" (autograd: the window's maximum takes all) or "proportional" (each
    # input's share of the window's sum, as an average pool's norm rule)
    maxpool: str = "winner"
    tags: tuple[str, ...] = field(default=())

    def rule(self, kind: str, bounds=None) -> Rule:
        return Rule(kind, bias=self.bias, gamma=self.gamma, epsilon=self.epsilon, epsilon_std=self.epsilon_std,
                    bounds=bounds)


RECIPES: dict[str, Recipe] = {}


BIAS_MODES = ("absorb", "ignore", "share", "share_input")
SHARED = ("share", "share_input")  # the bias modes that give a bias's relevance back to the inputs


def _check(recipe: Recipe) -> Recipe:
    if recipe.bias not in BIAS_MODES:
        raise ValueError(f"recipe {recipe.name}: bias must be one of {BIAS_MODES}")
    for kind in (recipe.first, recipe.lower, recipe.upper, recipe.dense, recipe.depthwise):
        if kind is not None and kind not in RULE_KINDS:
            raise ValueError(f"recipe {recipe.name}: unknown rule {kind!r}")
    for kind in (recipe.lower, recipe.upper, recipe.dense, recipe.depthwise):
        if kind in FIRST_ONLY:
            raise ValueError(f"recipe {recipe.name}: {kind} is a rule for the input layer only")
    if recipe.maxpool not in MAXPOOL_MODES:
        raise ValueError(f"recipe {recipe.name}: maxpool must be one of {MAXPOOL_MODES}")
    if recipe.epsilon_std and recipe.bias not in SHARED:
        raise ValueError(f"recipe {recipe.name}: epsilon_std needs shared biases (bias={' or '.join(SHARED)})")
    return recipe


def _add(recipe: Recipe) -> None:
    RECIPES[recipe.name] = _check(recipe)


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
_add(Recipe("epsilon_shared_input", "as epsilon_shared, each bias's relevance shared in proportion to the inputs' "
            "|values| alone (no |W||x| convolution)", lower="epsilon", upper="epsilon", bias="share_input"))
_add(Recipe("zplus_epsilon2_shared", "epsilon in the top two feature stages and the head, z+ below (its "
            "bias-free sums are >= 0: stable), flat input; biases shared", upper="epsilon", upper_stages=2,
            bias="share"))
_add(Recipe("zplus_epsilon4_shared", "as zplus_epsilon2_shared with epsilon in the top four feature stages",
            upper="epsilon", upper_stages=4, bias="share"))
_add(Recipe("zplus_epsilon4_shared_input", "as zplus_epsilon4_shared, biases shared in proportion to the inputs' "
            "|values| alone (no |W||x| convolution)", upper="epsilon", upper_stages=4, bias="share_input"))
_add(Recipe("layered_dw_epsilon_shared", "layered_shared with epsilon on depthwise convolutions",
            lower="gamma", upper="epsilon", upper_stages=2, depthwise="epsilon", bias="share"))


MODIFIERS = {"first": RULE_KINDS, "maxpool": MAXPOOL_MODES, "bias": BIAS_MODES}


def _number(value: str, name: str, key: str, zero: bool) -> float:
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if not (number >= 0 if zero else number > 0) or number == float("inf"):
        raise ExplainError(f"LRP composite {name!r}: {key} must be a number {'>=' if zero else '>'} 0, got {value!r}")
    return number


def get_recipe(name: str) -> Recipe:
    """A named recipe, optionally modified: `epsilon_shared+first=zbox+maxpool=proportional`,
    `+bias=share_input` (Rule.bias);
    `+epsilon=0.1` sets the epsilon and shared-bias rules' stabiliser, `+epsilon_std=0.01` adds to
    it that share of each image's layer-output std (Rule.epsilon_std; explain-eval measures both)."""
    base, *modifiers = name.split("+")
    try:
        recipe = RECIPES[base]
    except KeyError:
        raise ExplainError(f"unknown LRP composite {base!r}; known: {sorted(RECIPES)}") from None
    changes = {}
    for modifier in modifiers:
        key, _, value = modifier.partition("=")
        if key in ("epsilon", "epsilon_std"):
            changes[key] = _number(value, name, key, zero=key == "epsilon_std")
            continue
        if key not in MODIFIERS or value not in MODIFIERS[key]:
            raise ExplainError(f"LRP composite {name!r}: a modifier is first=RULE ({', '.join(RULE_KINDS)}), "
                               f"maxpool=MODE ({', '.join(MAXPOOL_MODES)}), bias=MODE ({', '.join(BIAS_MODES)}), "
                               f"epsilon=NUMBER > 0 or "
                               f"epsilon_std=NUMBER >= 0, got {modifier!r}")
        changes[key] = value
    if not changes:
        return recipe
    try:
        return _check(replace(recipe, name=name, **changes))
    except ValueError as exc:
        raise ExplainError(str(exc)) from None


def without_stabiliser(name: str) -> str:
    """A recipe name's rules with zennit's epsilon (1e-6) alone: its epsilon= and epsilon_std=
    modifiers dropped (what a larger stabiliser absorbs by design, the rules alone conserve)."""
    return "+".join(part for part in name.split("+") if not part.startswith(("epsilon=", "epsilon_std=")))


def input_bounds(model) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The lowest and highest value each input channel can take after normalisation (pixels 0
    and 1): what the z-box rule needs. load_run records them from the run's preprocessing
    (`model.lesionlens_input_bounds`); a model made elsewhere gets ImageNet's normalisation."""
    bounds = getattr(model, "lesionlens_input_bounds", None)
    if bounds is None:
        from ..data.preprocess import PreprocessSpec

        bounds = PreprocessSpec().input_bounds()  # ImageNet's mean and std, the spec's defaults
    return bounds


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
                rules[name] = recipe.rule(recipe.first, input_bounds(model) if recipe.first == "zbox" else None)
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
