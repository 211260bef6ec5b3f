"""The canonizers against the LRP contract: outputs unchanged, model restored exactly,
relevance conserved, and the same heatmap as zennit's own canonizer on torchvision's ResNet50."""

import pytest
import torch
from zennit.composites import EpsilonPlusFlat
from zennit.core import Composite

from conftest import zero_biases
from lesionlens.explain.rules import without_stabiliser
from lesionlens.explain.canonizers import canonizers_for
from lesionlens.explain.lrp import lrp_relevance
from lesionlens.training import ARCHITECTURES, create_model

SIZE = 64


def _model(arch, seed=0, zero_shifts=False):
    """Random weights with BatchNorm statistics from data and a classifier large enough that
    logits (and activations) are not vanishing."""
    torch.manual_seed(seed)
    model = create_model(arch, 2)
    classifier = model.get_classifier() if hasattr(model, "get_classifier") else model.classifier
    torch.nn.init.normal_(classifier.weight, std=3 / classifier.in_features ** 0.5)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(8, 3, SIZE, SIZE))
    model.eval()
    if zero_shifts:
        zero_biases(model)
    return model


def _inputs(seed=1):
    return torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed)) * 1.5


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_canonization_keeps_outputs_and_restores_the_model(arch):
    model = _model(arch)
    x = _inputs()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    inplace = [m.inplace for m in model.modules() if hasattr(m, "inplace")]
    with torch.no_grad():
        reference = model(x)
    composite = Composite(canonizers=canonizers_for(model))
    with composite.context(model) as canonized, torch.no_grad():
        inside = canonized(x)
    assert (inside - reference).abs().max() <= 1e-5 * reference.abs().max()
    after = model.state_dict()
    assert state.keys() == after.keys() and all(torch.equal(state[k], after[k]) for k in state)
    assert inplace == [m.inplace for m in model.modules() if hasattr(m, "inplace")]
    assert not any("canonizer" in name for name, _ in model.named_modules())
    with torch.no_grad():
        assert torch.equal(model(x), reference)


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("engine", ["zennit", "fast"])
@pytest.mark.parametrize("recipe", [None, "epsilon_plus_flat"])  # None: the architecture's default
def test_relevance_is_conserved_with_biases_zeroed(arch, engine, recipe):
    """The rules conserve; a stabiliser larger than zennit's 1e-6 (EfficientNet's default, 10% of
    each layer's output std in its four epsilon stages) absorbs relevance by design, never adds
    any, and keeps its sign (on these random models it keeps 28-29% of the logit; 1% of the std
    in two stages, the default before, kept 80-100%)."""
    from lesionlens.explain.fast_lrp import fast_lrp_relevance
    from lesionlens.explain.lrp import composite_for
    from lesionlens.training.models import spec_of_model

    model = _model(arch, zero_shifts=True)
    x = _inputs()
    targets = torch.tensor([0, 1])
    chosen = recipe or spec_of_model(model).composite
    rules_only = without_stabiliser(chosen)

    def totals_and_logits(name):
        if engine == "zennit":
            logits, relevance = lrp_relevance(model, x, targets, composite_for(model, name))
        else:
            logits, relevance = fast_lrp_relevance(model, x, targets, name)
        return relevance.sum((1, 2, 3)), logits[torch.arange(2), targets]

    totals, explained = totals_and_logits(rules_only)
    assert explained.abs().min() > 1e-2  # a meaningful logit, not numerical noise
    assert torch.allclose(totals, explained, rtol=1e-3, atol=0), (totals, explained)
    if chosen != rules_only:
        stabilised, _ = totals_and_logits(chosen)
        share = stabilised / explained
        assert (share > 0.2).all() and (share < 1.0).all(), share


@pytest.mark.parametrize("arch", ["resnet50", "attention_resnet50"])
def test_shared_bias_rules_conserve_with_the_biases_in_place(arch):
    """bias "share": what a bias would absorb goes back to the inputs, so the heatmap's total is
    the logit even with every merged BatchNorm shift present (the ResNets' default recipe).
    Not EfficientNet: its 3x3 depthwise convolutions see 9 inputs per unit, often all zero after
    a ReLU, and a unit active on its bias alone has no input to give relevance to
    (docs/explanation-choice.md)."""
    from lesionlens.explain.fast_lrp import fast_lrp_relevance
    from lesionlens.explain.lrp import composite_for

    model = _model(arch)
    # BatchNorm statistics from data: the merged convolutions get real shifts
    assert any(m.running_mean.abs().max() > 0.1 for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    x = _inputs()
    targets = torch.tensor([0, 1])
    for recipe in ("epsilon_shared", "layered_shared", "epsilon_shared+first=zbox+maxpool=proportional",
                   "epsilon_shared+first=wsquare+maxpool=proportional", "epsilon_shared+bias=share_input"):
        logits, relevance = fast_lrp_relevance(model, x, targets, recipe)
        explained = logits[torch.arange(2), targets]
        assert torch.allclose(relevance.sum((1, 2, 3)), explained, rtol=1e-3, atol=0), recipe
        _, reference = lrp_relevance(model, x, targets, composite_for(model, recipe))
        assert torch.allclose(reference.sum((1, 2, 3)), explained, rtol=1e-3, atol=0), recipe
    # and absorbing (zennit's rules as they are) loses relevance to those shifts
    logits, absorbed = fast_lrp_relevance(model, x, targets, "layered")
    explained = logits[torch.arange(2), targets]
    assert not torch.allclose(absorbed.sum((1, 2, 3)), explained, rtol=1e-2, atol=0)


def test_conserved_on_briefly_trained_weights(trained_run):
    from lesionlens.training import load_run

    from lesionlens.explain.lrp import composite_for
    from lesionlens.training.models import spec_of_model

    model, _ = load_run(trained_run)
    zero_biases(model)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3)) * 1.5
    rules = composite_for(model, without_stabiliser(spec_of_model(model).composite))  # (the stabiliser absorbs)
    logits, relevance = lrp_relevance(model, x, torch.tensor([1, 1]), rules)
    assert torch.allclose(relevance.sum((1, 2, 3)), logits[:, 1], rtol=1e-3, atol=1e-5)


def test_matches_zennit_reference_canonizer_on_torchvision_resnet50():
    import torchvision
    from zennit.attribution import Gradient
    from zennit.torchvision import ResNetCanonizer

    timm_model = _model("resnet50", seed=4)
    tv_model = torchvision.models.resnet50(num_classes=2).eval()
    tv_model.load_state_dict(timm_model.state_dict(), strict=True)  # same parameter names
    from lesionlens.explain.lrp import composite_for

    x = _inputs(5)
    target = torch.tensor([1, 0])
    # zennit's EpsilonPlusFlat as our recipe of the same rules, on our canonizers
    _, ours = lrp_relevance(timm_model, x, target, composite_for(timm_model, "epsilon_plus_flat"))
    with Gradient(model=tv_model, composite=EpsilonPlusFlat(canonizers=[ResNetCanonizer()])) as attributor:
        _, reference = attributor(x, lambda out: out * torch.nn.functional.one_hot(target, 2))
    cosine = torch.nn.functional.cosine_similarity(ours.flatten(1), reference.flatten(1))
    assert cosine.min() >= 0.9999, cosine
    ratio = ours.sum((1, 2, 3)) / reference.sum((1, 2, 3))
    assert ((ratio - 1).abs() <= 0.01).all(), ratio
    # and the reason ours exist: zennit's torchvision canonizer does nothing to timm's blocks
    with Gradient(model=timm_model, composite=EpsilonPlusFlat(canonizers=[ResNetCanonizer()])) as attributor:
        logits, naive = attributor(x, lambda out: out * torch.nn.functional.one_hot(target, 2))
    naive_ratio = naive.sum((1, 2, 3)) / logits[torch.arange(2), target]
    assert ((naive_ratio - 1).abs() > 0.01).any(), naive_ratio


def _fast_recipe_cases():
    """(arch, recipe) for every recipe the fast engine runs, on ResNet50 (dense convolutions) and
    EfficientNet (depthwise; the attention head adds no rule). On EfficientNet the gamma and
    bias-ignoring recipes blow up in both engines (relevance ~1e14: sums of cancelling terms over
    a depthwise unit's 9 inputs; docs/explanation-choice.md), where agreement means nothing."""
    from lesionlens.explain.fast_lrp import supports
    from lesionlens.explain.rules import RECIPES

    cases = []
    for name, recipe in RECIPES.items():
        if supports(recipe):
            continue
        cases.append(("resnet50", name))
        if "gamma" not in (recipe.lower, recipe.upper, recipe.depthwise) and recipe.bias != "ignore":
            cases.append(("efficientnet_b0_relu", name))
    # the input-layer rules and max-pool handling, as modifiers of the defaults
    for modified in ("epsilon_shared+first=wsquare+maxpool=proportional", "epsilon_shared+first=zbox",
                     "epsilon_shared+first=epsilon+maxpool=proportional"):
        cases.append(("resnet50", modified))
    # (share_input on EfficientNet: its depthwise convolutions take the grouped path)
    for modified in ("zplus_epsilon2_shared+first=zbox", "zplus_epsilon2_shared+first=wsquare",
                     "zplus_epsilon2_shared+epsilon=0.1", "zplus_epsilon2_shared+epsilon_std=0.1",
                     "zplus_epsilon4_shared_input+epsilon_std=0.1"):
        cases.append(("efficientnet_b0_relu", modified))
    return cases


@pytest.mark.parametrize("arch,recipe", _fast_recipe_cases())
def test_fast_engine_equals_zennit_for_every_recipe_it_runs(arch, recipe):
    """Every rule the fast engine implements (z+, epsilon, gamma, flat; biases absorbed, ignored
    or shared; dense and depthwise convolutions) against zennit's hooks with the same assignment."""
    from zennit.rules import ZPlus

    from lesionlens.explain.fast_lrp import fast_lrp_relevance
    from lesionlens.explain.lrp import RecipeComposite
    from lesionlens.explain.rules import get_recipe

    model = _model(arch)
    x = _inputs()
    targets = torch.tensor([1, 0])
    _, reference = lrp_relevance(model, x, targets, RecipeComposite(model, get_recipe(recipe), canonizers_for(model),
                                                                    zplus=ZPlus, hook_relus=True))
    _, fast = fast_lrp_relevance(model, x, targets, recipe)
    assert torch.isfinite(reference).all()
    cosine = torch.nn.functional.cosine_similarity(fast.flatten(1), reference.flatten(1))
    assert cosine.min() >= 0.9999, cosine


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_fast_rules_equal_straightforward_zennit_and_prepared_hooks_equal_per_call(arch):
    import copy

    from zennit.rules import ZPlus

    from lesionlens.explain.lrp import RecipeComposite, composite_for
    from lesionlens.explain.rules import get_recipe
    from lesionlens.training.models import spec_of_model

    model = _model(arch)
    x = _inputs()
    targets = torch.tensor([1, 0])
    recipe = get_recipe(spec_of_model(model).composite)
    _, ours = lrp_relevance(model, x, targets, composite_for(model))
    # the straightforward zennit computation: its two-term ZPlus, and Pass hooks on every ReLU
    _, reference = lrp_relevance(model, x, targets, RecipeComposite(model, recipe, canonizers_for(model), zplus=ZPlus,
                                                                    hook_relus=True))
    assert torch.allclose(ours, reference, rtol=1e-4, atol=1e-5 * float(reference.abs().max()))
    cosine = torch.nn.functional.cosine_similarity(ours.flatten(1), reference.flatten(1))
    assert cosine.min() >= 0.9999
    # the hook-free engine gives the same relevance, and restores the model on exit
    from lesionlens.explain.fast_lrp import fast_lrp, fast_lrp_relevance

    state = {k: v.clone() for k, v in model.state_dict().items()}
    _, fast = fast_lrp_relevance(model, x, targets)
    assert torch.allclose(fast, reference, rtol=1e-4, atol=1e-5 * float(reference.abs().max()))
    assert torch.nn.functional.cosine_similarity(fast.flatten(1), reference.flatten(1)).min() >= 0.9999
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert not any(key in vars(m) for m in model.modules() for key in ("forward", "_lrp_params", "pair", "_lrp_rule"))
    from lesionlens.explain.lrp import prepared_relevance

    with fast_lrp(copy.deepcopy(model)) as held:
        for _ in range(2):
            _, again = prepared_relevance(held, x, targets)
            assert torch.allclose(again, fast)
    # entered by hand and the context object dropped: the model stays prepared (a generator
    # context would be collected and silently undo the patching)
    import gc

    held = fast_lrp(copy.deepcopy(model)).__enter__()
    gc.collect()
    _, again = prepared_relevance(held, x, targets)
    assert torch.allclose(again, fast)
    prepared = copy.deepcopy(model)
    composite = composite_for(prepared)
    composite.register(prepared)
    try:
        for _ in range(2):  # hooks registered once serve repeated calls
            _, again = prepared_relevance(prepared, x, targets)
            assert torch.allclose(again, ours, rtol=1e-5, atol=1e-6 * float(ours.abs().max()))
    finally:
        composite.remove()


def test_recipe_modifiers_choose_the_input_rule_and_the_max_pool_and_refuse_the_rest():
    from lesionlens.errors import ExplainError
    from lesionlens.explain.rules import Recipe, _check, assign_rules, get_recipe, input_bounds

    recipe = get_recipe("epsilon_shared+first=zbox+maxpool=proportional")
    assert (recipe.first, recipe.maxpool, recipe.lower, recipe.bias) == ("zbox", "proportional", "epsilon", "share")
    assert get_recipe("epsilon_shared").first == "flat"  # the registered recipe is not changed
    # the stabiliser as a modifier: every rule of the recipe reads it, the registered one is unchanged
    stabilised = get_recipe("zplus_epsilon2_shared+epsilon=0.1+epsilon_std=0.02")
    assert (stabilised.epsilon, stabilised.epsilon_std) == (0.1, 0.02)
    assert get_recipe("zplus_epsilon2_shared").epsilon == 1e-6 and get_recipe("zplus_epsilon2_shared").epsilon_std == 0
    assert get_recipe("epsilon_shared+bias=share_input").bias == "share_input"
    rules = assign_rules(_model("efficientnet_b0_relu"), stabilised).values()
    assert {(rule.epsilon, rule.epsilon_std) for rule in rules} == {(0.1, 0.02)}
    for bad in ("epsilon_shared+first=nope", "epsilon_shared+lower=zbox", "epsilon_shared+maxpool=avg", "nope+first=zbox",
                "epsilon_shared+epsilon=0", "epsilon_shared+epsilon=-1", "epsilon_shared+epsilon=nan",
                "epsilon_shared+epsilon=x", "epsilon_shared+epsilon_std=-0.1", "epsilon_shared+epsilon_std=inf",
                "epsilon+epsilon_std=0.1", "epsilon_shared+bias=ignore+epsilon_std=0.1",  # (it needs shared biases)
                "epsilon_shared+bias=nope"):
        with pytest.raises(ExplainError):
            get_recipe(bad)
    with pytest.raises(ValueError, match="input layer only"):
        _check(Recipe("x", "", lower="zbox"))
    model = _model("resnet50")
    first = next(iter(assign_rules(model, recipe).values()))
    assert first.kind == "zbox" and first.bounds == input_bounds(model)
    low, high = first.bounds  # ImageNet's normalisation of pixels 0 and 1
    assert low[0] == pytest.approx(-0.485 / 0.229) and high[2] == pytest.approx((1 - 0.406) / 0.225)


def test_load_run_records_the_input_bounds_of_its_preprocessing(trained_run):
    from lesionlens.explain.rules import input_bounds
    from lesionlens.training.rundir import load_run

    model, meta = load_run(trained_run)
    spec = meta.preprocessing
    assert input_bounds(model) == (tuple(-m / s for m, s in zip(spec.mean, spec.std)),
                                   tuple((1 - m) / s for m, s in zip(spec.mean, spec.std)))


def test_the_relative_stabiliser_follows_each_image_and_only_convolutions():
    """epsilon_std x the std of each image's own outputs of the layer: an image ten times larger
    gets a ten times larger stabiliser, so the rule means the same at any activation scale; an
    image's map does not depend on the batch it is explained in; dense layers keep epsilon."""
    from lesionlens.explain.fast_lrp import fast_lrp_relevance
    from lesionlens.explain.lrp import layer_epsilon

    z = torch.randn(1, 8, 5, 5, generator=torch.Generator().manual_seed(0))
    epsilon = layer_epsilon(torch.cat([z, 10 * z]), 1e-6, 0.1)
    assert epsilon.shape == (2, 1, 1, 1)
    assert float(epsilon[0]) == pytest.approx(1e-6 + 0.1 * float(z.std()), rel=1e-5)
    assert float(epsilon[1] - 1e-6) == pytest.approx(10 * float(epsilon[0] - 1e-6), rel=1e-5)
    assert layer_epsilon(torch.randn(2, 2), 1e-6, 0.1) == 1e-6 and layer_epsilon(z, 1e-6, 0.0) == 1e-6
    model = _model("efficientnet_b0_relu")
    x = _inputs()
    targets = torch.tensor([1, 0])
    recipe = "zplus_epsilon2_shared+epsilon_std=0.1"
    # beside a much brighter image: a std over the batch would give the second a far larger epsilon
    x = torch.cat([x[:1] * 4, x[1:]])
    _, both = fast_lrp_relevance(model, x, targets, recipe)
    _, alone = fast_lrp_relevance(model, x[1:], targets[1:], recipe)
    assert torch.allclose(both[1:], alone, rtol=1e-3, atol=1e-4 * float(alone.abs().max()))
    _, unstabilised = fast_lrp_relevance(model, x, targets, "zplus_epsilon2_shared")
    assert not torch.allclose(both, unstabilised, rtol=1e-2, atol=0)  # the stabiliser does act


@pytest.mark.parametrize("nonnegative,dilation", [(False, 1), (True, 1), (False, 2)])
def test_bias_shared_by_input_against_its_formula(nonnegative, dilation):
    """bias "share_input", written out per receptive field (unfold) on one strided, padded (and
    dilated) convolution: R_i = x_i sum_j w_ij s_j + |x_i| sum_j b_j s_j / sum_{i' in RF(j)} |x_i'|, with
    s_j = R_j / z_j, summed over the windows that hold i. The fast engine takes a shortcut
    (channel sums and one-channel convolutions); both input signs take their own path."""
    from lesionlens.explain.fast_lrp import _ModifiedConv
    from lesionlens.explain.rules import Rule

    torch.manual_seed(5)
    conv = torch.nn.Conv2d(4, 6, 3, stride=2, padding=1, dilation=dilation)
    conv.bias.data.uniform_(-1, 1)
    conv._lrp_rule = Rule("epsilon", bias="share_input")
    x = torch.randn(2, 4, 9, 9)
    x = x.abs() if nonnegative else x
    x[:, :, :4, :4] = 0  # units whose whole receptive field is zero (after a ReLU): nothing to share with
    x.requires_grad_()
    out = _ModifiedConv.apply(x, conv)
    relevance = torch.randn_like(out)
    (fast,) = torch.autograd.grad(out, x, relevance)

    cols = torch.nn.functional.unfold(x.detach(), 3, dilation=dilation, padding=1, stride=2)  # (B, C*9, L)
    z = out.detach().flatten(2)  # (B, 6, L)
    s = relevance.flatten(2) / (z + 1e-6 * torch.where(z >= 0, 1.0, -1.0))  # (zennit's stabilize)
    weight = conv.weight.detach().flatten(1)  # (6, C*9)
    by_weight = cols * torch.einsum("ji,bjl->bil", weight, s)
    by_input = cols.abs() * (conv.bias.detach().view(1, -1, 1) * s).sum(1, keepdim=True) / (
        cols.abs().sum(1, keepdim=True) + 1e-6)
    expected = torch.nn.functional.fold(by_weight + by_input, (9, 9), 3, dilation=dilation, padding=1, stride=2)
    assert torch.isfinite(fast).all() and torch.allclose(fast, expected, rtol=1e-4, atol=1e-5)
    # conserving: every output's relevance reached the inputs, except where the receptive field
    # is all zero (a unit active on its bias alone has no input to give it to)
    sign = torch.where(z >= 0, 1.0, -1.0)
    has_inputs = cols.abs().sum(1, keepdim=True) > 0
    assert not has_inputs.all()
    kept = (relevance.flatten(2) * z / (z + 1e-6 * sign) * has_inputs).sum()
    assert torch.allclose(fast.sum(), kept, rtol=1e-3)
