"""LRP without hooks: the same rules as our zennit composite, computed in autograd Functions.

Why: zennit attaches rules with hooks, so every convolution's ordinary backward still runs and
its result is thrown away before the rule computes the relevance; that is about a third of
zennit's LRP time. Here each rule *is* the layer's backward: z+ convolutions cost one extra
convolution forward and one transposed convolution, as a plain gradient costs the input and
the weight gradients. Structure still comes from our zennit canonizers (residual Sums, merged
BatchNorms, constant gates, constant attention), and `lesionlens.explain.lrp` with zennit stays
the reference: the tests require the same heatmaps (cosine >= 0.9999).

Rules, as lrp.RecipeComposite assigns them (rules.assign_rules: one assignment for both
engines): flat, z+, epsilon or gamma per convolution (biases absorbed, ignored or shared), w^2
or z-box at the input, epsilon for dense layers and the constant-attention pooling, norm for
Sums and average pools; ReLUs pass relevance unchanged (see _ReLUPass), max-pooling is left to
autograd (winner takes all) or shares in proportion to the inputs (the recipe's `maxpool`), and
the merged (identity) BatchNorms are skipped. Alpha-beta is zennit-only (`supports`).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn
from torch.nn.grad import conv2d_input
from zennit.core import Composite, stabilize
from zennit.layer import Sum

from ..errors import ExplainError
from .canonizers import ConstantAttentionPool, canonizers_for
from .lrp import layer_epsilon
from .rules import SHARED, assign_rules, get_recipe

EPSILON = 1e-6  # zennit's default stabilizer


def _conv_args(conv: nn.Conv2d) -> dict:
    return dict(stride=conv.stride, padding=conv.padding, dilation=conv.dilation, groups=conv.groups)


class _Rule(torch.autograd.Function):
    """Base for the rules: the forward/setup_context split and generate_vmap_rule let
    torch.func vmap the backward, so CRP pushes all its concept relevances down in one batched
    pass (functorch has batching rules for the transposed convolutions; the legacy vmap behind
    `autograd.grad(is_grads_batched=True)` loops over them one by one)."""

    generate_vmap_rule = True

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, layer = inputs
        ctx.layer = layer
        ctx.save_for_backward(x)


class _ConvRule(_Rule):
    """A convolution whose backward is an LRP rule: the forward is the convolution itself."""

    @staticmethod
    def forward(x, conv):
        return conv._conv_forward(x, conv.weight, conv.bias)


class _ZPlusConv(_ConvRule):
    @staticmethod
    def setup_context(ctx, inputs, output):
        x, conv = inputs
        ctx.layer = conv
        # behind a ReLU (inputs >= 0) z+ needs only the input; otherwise also the output
        ctx.signed = bool(x.min() < 0)
        ctx.save_for_backward(*((x, output) if ctx.signed else (x,)))

    @staticmethod
    def backward(ctx, relevance):
        conv, args = ctx.layer, _conv_args(ctx.layer)
        w_pos, b_pos, w_neg, w_abs = _positive_params(conv)
        if not ctx.signed:
            (x,) = ctx.saved_tensors
            # the negative-input term is exactly zero, and z+ >= 0, where zennit's
            # stabilize(z) is simply z + 1e-6 (fewer passes over big tensors)
            s = relevance / conv._conv_forward(x, w_pos, b_pos).add_(EPSILON)
            return conv2d_input(x.shape, w_pos, s, **args).mul_(x), None
        x, y = ctx.saved_tensors
        # z = W+ x+ + W- x- + b+ without its two convolutions: W+ x+ + W- x- = (Wx + |W||x|) / 2
        # (expand W = W+ + W-, x = x+ + x-), and Wx is the forward's output minus the bias.
        # Both terms are >= 0, so zennit's stabilize(z) is z + 1e-6 here too.
        wx = y if conv.bias is None else y - conv.bias.view(1, -1, 1, 1)
        z = conv._conv_forward(x.abs(), w_abs, None).add_(wx).mul_(0.5)
        if b_pos is not None:
            z += b_pos.view(1, -1, 1, 1)
        s = relevance / z.add_(EPSILON)
        x_pos, x_neg = x.clamp(min=0), x.clamp(max=0)
        return conv2d_input(x.shape, w_pos, s, **args).mul_(x_pos) + conv2d_input(x.shape, w_neg, s, **args).mul_(x_neg), None


def _positive_params(conv: nn.Conv2d):
    """(W+, b+, W-, |W|) computed once per patched convolution, not per backward."""
    cached = conv.__dict__.get("_lrp_params")
    if cached is None:
        weight = conv.weight.detach()
        # z+ reads a bias as 0 unless it absorbs relevance (zennit's ZPlus): the bias-free z+ sum is >= 0
        bias = None if conv.bias is None or conv._lrp_rule.bias != "absorb" else conv.bias.detach().clamp(min=0)
        cached = (weight.clamp(min=0), bias, weight.clamp(max=0), weight.abs())
        conv.__dict__["_lrp_params"] = cached
    return cached


def _modified_params(conv: nn.Conv2d):
    """(W', b', |W'|) of an epsilon or gamma rule: W + gamma W+ (gamma 0 for epsilon), the bias
    likewise or None when the rule ignores biases; computed once per patched layer."""
    cached = conv.__dict__.get("_lrp_params")
    if cached is None:
        rule = conv._lrp_rule
        gamma = rule.gamma if rule.kind == "gamma" else 0.0
        weight = conv.weight.detach()
        bias = conv.bias.detach() if conv.bias is not None and rule.bias != "ignore" else None
        weight = weight + gamma * weight.clamp(min=0)
        cached = (weight, None if bias is None else bias + gamma * bias.clamp(min=0), weight.abs())
        conv.__dict__["_lrp_params"] = cached
    return cached


def _stabilized(z: torch.Tensor, epsilon) -> torch.Tensor:
    """zennit's stabilize(z, epsilon): z + epsilon, or z - epsilon where z < 0, in two passes
    over the tensor instead of its five (sign, equality, ...). One difference: a z of exactly
    -0.0 gets -epsilon (zennit: +epsilon), a tie that conv outputs with biases do not produce."""
    return z.abs().add_(epsilon).copysign_(z)


class _ModifiedConv(_ConvRule):
    """Epsilon (W' = W) and gamma (W' = W + gamma W+) in zennit's form: z = W'x + b',
    R_in = x * W'^T (R / stabilize(z, epsilon)); with bias "share" (lrp.SharedBias), plus
    |x| * |W'|^T (b' R / z / (|W'| |x|)); with "share_input", |W'| replaced by ones."""

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, conv = inputs
        ctx.layer = conv
        # epsilon with the bias kept (absorbed or shared): z is the forward's own output
        ctx.reuse = conv._lrp_rule.kind == "epsilon" and conv._lrp_rule.bias != "ignore"
        # behind a ReLU |x| = x: the shared bias's term then needs no |x| and folds into one product
        ctx.nonnegative = conv._lrp_rule.bias in SHARED and bool(x.min() >= 0)
        ctx.save_for_backward(*((x, output) if ctx.reuse else (x,)))

    @staticmethod
    def backward(ctx, relevance):
        x = ctx.saved_tensors[0]
        conv, args = ctx.layer, _conv_args(ctx.layer)
        rule = conv._lrp_rule
        weight, bias, weight_abs = _modified_params(conv)
        z = ctx.saved_tensors[1] if ctx.reuse else conv._conv_forward(x, weight, bias)
        s = relevance / _stabilized(z, layer_epsilon(z, rule.epsilon, rule.epsilon_std))
        back = conv2d_input(x.shape, weight, s, **args)
        if rule.bias in SHARED and bias is not None:
            x_abs = x if ctx.nonnegative else x.abs()
            bias_relevance = s * bias.view(1, -1, 1, 1)
            shared = (_shared_by_input(conv, x_abs, bias_relevance, rule.epsilon) if rule.bias == "share_input"
                      else _shared_by_kernel(conv, x_abs, weight_abs, bias_relevance, rule.epsilon))
            if ctx.nonnegative:
                return back.add_(shared).mul_(x), None
            # (shared may be one channel, so not in place; addcmul_ has no vmap batching rule)
            return back.mul_(x).add_(shared * x_abs), None
        return back.mul_(x), None


def _shared_by_kernel(conv: nn.Conv2d, x_abs: torch.Tensor, kernel: torch.Tensor, bias_relevance: torch.Tensor,
                      epsilon) -> torch.Tensor:
    """sum_j k_ij bias_relevance_j / sum_i' k_i'j |x_i'| (the caller multiplies by |x_i|): a
    bias's relevance shared in proportion to |x_i| k_ij, with k = |W'| (bias "share") or ones.
    The denominator is >= 0, so zennit's stabilize() is + epsilon."""
    d = conv._conv_forward(x_abs, kernel, None).add_(epsilon)
    return conv2d_input(x_abs.shape, kernel, bias_relevance.div_(d), **_conv_args(conv))


def _shared_by_input(conv: nn.Conv2d, x_abs: torch.Tensor, bias_relevance: torch.Tensor, epsilon) -> torch.Tensor:
    """_shared_by_kernel with a ones kernel (bias "share_input"; lrp.SharedBias(by_input=True)).
    Without groups every output channel sees the same inputs, so the denominator is one
    single-channel convolution of the channel-summed |x| and the bias terms are summed over
    channels first: two single-channel passes instead of a full convolution and its transpose."""
    if conv.groups != 1:
        return _shared_by_kernel(conv, x_abs, torch.ones_like(conv.weight), bias_relevance, epsilon)
    args = _conv_args(conv)
    ones = conv.weight.new_ones(1, 1, *conv.weight.shape[2:])
    d = nn.functional.conv2d(x_abs.sum(1, keepdim=True), ones, None, **{k: v for k, v in args.items() if k != "groups"})
    per_unit = bias_relevance.sum(1, keepdim=True).div_(d.add_(epsilon))
    return conv2d_input((x_abs.shape[0], 1, *x_abs.shape[2:]), ones, per_unit, **args)


class _FlatConv(_ConvRule):
    @staticmethod
    def backward(ctx, relevance):
        (x,) = ctx.saved_tensors
        conv = ctx.layer
        ones = torch.ones_like(conv.weight)
        z = conv._conv_forward(torch.ones_like(x), ones, None)
        return conv2d_input(x.shape, ones, relevance / stabilize(z), **_conv_args(conv)), None


class _WSquareConv(_ConvRule):
    """w^2 at the input: each output's relevance to its inputs in proportion to w^2 (the bias
    read as 0, as lrp.zennit_rule does)."""

    @staticmethod
    def backward(ctx, relevance):
        (x,) = ctx.saved_tensors
        conv = ctx.layer
        squared = conv.weight.detach() ** 2
        z = conv._conv_forward(torch.ones_like(x), squared, None)
        return conv2d_input(x.shape, squared, relevance / stabilize(z), **_conv_args(conv)), None


class _ZBoxConv(_ConvRule):
    """z-box at the input (zennit's ZBox): z = Wx - W+ l - W- h (the bias cancels), R_in =
    x W^T s - l W+^T s - h W-^T s with s = R / stabilize(z); l, h the input's bounds."""

    @staticmethod
    def backward(ctx, relevance):
        (x,) = ctx.saved_tensors
        conv, args = ctx.layer, _conv_args(ctx.layer)
        weight = conv.weight.detach()
        w_pos, w_neg = weight.clamp(min=0), weight.clamp(max=0)
        low, high = (torch.tensor(b, dtype=x.dtype, device=x.device).view(1, -1, 1, 1).expand_as(x)
                     for b in conv._lrp_rule.bounds)
        z = (conv._conv_forward(x, weight, None) - conv._conv_forward(low, w_pos, None)
             - conv._conv_forward(high, w_neg, None))
        s = relevance / stabilize(z)
        return (conv2d_input(x.shape, weight, s, **args) * x - conv2d_input(x.shape, w_pos, s, **args) * low
                - conv2d_input(x.shape, w_neg, s, **args) * high), None


class _ProportionalMaxPool(_Rule):
    """Max-pooling whose backward shares each window's relevance among its inputs in proportion
    to their value (lrp.ProportionalMaxPool, the zennit hook it equals)."""

    @staticmethod
    def forward(x, pool):
        return nn.functional.max_pool2d(x, pool.kernel_size, pool.stride, pool.padding, pool.dilation,
                                        ceil_mode=pool.ceil_mode)

    @staticmethod
    def backward(ctx, relevance):
        from .lrp import window_sums

        (x,) = ctx.saved_tensors
        z, pullback = torch.func.vjp(lambda t: window_sums(t, ctx.layer), x.detach())
        (gradient,) = pullback(relevance / stabilize(z))
        return x * gradient, None


class _EpsilonLinear(_Rule):
    @staticmethod
    def forward(x, linear):
        return nn.functional.linear(x, linear.weight, linear.bias)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.layer = inputs[1]
        ctx.save_for_backward(inputs[0], output)

    @staticmethod
    def backward(ctx, relevance):
        x, y = ctx.saved_tensors
        linear = ctx.layer
        rule = linear._lrp_rule
        if rule.bias == "ignore" and linear.bias is not None:
            y = y - linear.bias
        s = relevance / stabilize(y, rule.epsilon)
        out = x * (s @ linear.weight)
        if rule.bias == "share_input" and linear.bias is not None:
            d = x.abs().sum(-1, keepdim=True)
            out = out + x.abs() * ((s * linear.bias).sum(-1, keepdim=True) / stabilize(d, rule.epsilon))
        if rule.bias == "share" and linear.bias is not None:
            weight_abs = linear.weight.abs()
            d = x.abs() @ weight_abs.T
            out = out + x.abs() * ((s * linear.bias / stabilize(d, rule.epsilon)) @ weight_abs)
        return out, None


class _SumRule(torch.autograd.Function):
    """zennit's Sum (over the last, stacked dimension) with the norm rule, in closed form."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x):
        return x.sum(-1)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[0], output)

    @staticmethod
    def backward(ctx, relevance):
        x, y = ctx.saved_tensors
        return x * (relevance / stabilize(y)).unsqueeze(-1)


class _PairSumRule(torch.autograd.Function):
    """a + b with the norm rule (what zennit's Sum computes on the stacked pair), without
    stacking: R_a = a R / (a + b), R_b = b R / (a + b), stabilised as zennit does."""

    generate_vmap_rule = True

    @staticmethod
    def forward(a, b):
        return a + b

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs, output)

    @staticmethod
    def backward(ctx, relevance):
        a, b, y = ctx.saved_tensors
        s = relevance / stabilize(y)
        return a * s, b * s


class _GlobalAvgPoolRule(_SumRule):
    """Adaptive average pooling to 1x1 with the norm rule, in closed form."""

    @staticmethod
    def forward(x):
        return x.mean((2, 3), keepdim=True)

    @staticmethod
    def backward(ctx, relevance):
        x, y = ctx.saved_tensors
        return x * (relevance / stabilize(y)) / (x.shape[2] * x.shape[3])


class _NormRule(_Rule):
    """R_in = x * d(f)/dx [R / f(x)] for a parameter-free f (Sum, average pool, constant
    attention): the layer is cheap, so its own vector-Jacobian product gives the gradient
    (torch.func's, which also composes with the batched CRP pass)."""

    @staticmethod
    def forward(x, fn):
        return fn(x)

    @staticmethod
    def backward(ctx, relevance):
        (x,) = ctx.saved_tensors
        y, pullback = torch.func.vjp(ctx.layer, x.detach())
        (gradient,) = pullback(relevance / stabilize(y))
        return x * gradient, None


class _ReLUPass(torch.autograd.Function):
    """ReLU whose backward passes relevance unchanged. The ReLU gradient would only zero it
    where the output is 0, and every rule above a ReLU here (z+, epsilon, the norm rules, the
    constant gate, max-pooling's routing to a maximum) already gives an input of 0 no
    relevance: the mask is a no-op, so skip it (and keep no mask for the backward)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x):
        return torch.relu(x)

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    @staticmethod
    def backward(ctx, relevance):
        return relevance


CONV_RULES = {"flat": _FlatConv, "zplus": _ZPlusConv, "epsilon": _ModifiedConv, "gamma": _ModifiedConv,
              "wsquare": _WSquareConv, "zbox": _ZBoxConv}
FAST_RULES = frozenset(CONV_RULES)  # alpha2beta1 is zennit-only


def _patch(model: nn.Module, rules: dict, maxpool: str = "winner") -> list[nn.Module]:
    patched = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            if type(module) is not nn.Conv2d:  # e.g. timm's Conv2dSame pads inside forward
                raise NotImplementedError(f"fast LRP does not handle {type(module).__name__}")
            module._lrp_rule = rules[name]
            rule = CONV_RULES[rules[name].kind]
            module.forward = (lambda m, r: (lambda x: r.apply(x, m)))(module, rule)
        elif isinstance(module, nn.Linear):
            if rules[name].kind != "epsilon":
                raise NotImplementedError(f"fast LRP applies epsilon to linear layers, not {rules[name].kind}")
            module._lrp_rule = rules[name]
            module.forward = (lambda m: (lambda x: _EpsilonLinear.apply(x, m)))(module)
        elif isinstance(module, Sum) and module.dim == -1:
            module.forward = _SumRule.apply
            module.pair = _PairSumRule.apply  # canonizers.summed: no stacking
        elif isinstance(module, nn.AdaptiveAvgPool2d) and module.output_size in (1, (1, 1)):
            module.forward = _GlobalAvgPoolRule.apply
        elif isinstance(module, (Sum, ConstantAttentionPool, nn.AdaptiveAvgPool2d, nn.AvgPool2d)):
            plain = type(module).forward.__get__(module)
            module.forward = (lambda f: (lambda x: _NormRule.apply(x, f)))(plain)
        elif type(module) is nn.ReLU:
            module.forward = _ReLUPass.apply
        elif isinstance(module, nn.MaxPool2d) and maxpool == "proportional":
            if module.dilation not in (1, (1, 1)):
                raise NotImplementedError("proportional max-pooling of a dilated pool")
            module.forward = (lambda m: (lambda x: _ProportionalMaxPool.apply(x, m)))(module)
        elif isinstance(module, nn.BatchNorm2d) and _is_identity(module):
            # merged into its convolution: skip the (identity) arithmetic, keep a fused activation
            act = getattr(module, "act", None)
            module.forward = (lambda a: (lambda x: a(x)))(act) if act is not None else (lambda x: x)
        else:
            continue
        patched.append(module)
    return patched


def _is_identity(bn: nn.BatchNorm2d) -> bool:
    """A BatchNorm the canonizer merged away: mean 0, variance 1 - eps, weight 1, bias 0
    (and no dropout inside timm's BatchNormAct2d, whose `drop` is Identity in eval)."""
    drop = getattr(bn, "drop", None)
    return (not bn.training and bn.running_mean is not None and not bn.running_mean.any()
            and torch.all(bn.running_var == 1 - bn.eps) and torch.all(bn.weight == 1) and not bn.bias.any()
            and (drop is None or isinstance(drop, nn.Identity)))


class fast_lrp:  # noqa: N801  (used like the function-style context managers it replaced)
    """Canonize `model` (our zennit canonizers) and make its backward compute LRP relevance;
    both undone on exit. A class, not a generator: a generator context entered by hand
    (`fast_lrp(m).__enter__()`) and then dropped is garbage-collected, which runs its cleanup and
    silently un-patches the model; this one stays in place until `__exit__`."""

    def __init__(self, model: nn.Module, recipe: Optional[str] = None):
        from ..training.models import spec_of_model

        self.model = model
        self.recipe = get_recipe(recipe or spec_of_model(model).composite)
        unsupported = supports(self.recipe)
        if unsupported:
            raise ExplainError(f"the fast engine does not implement {unsupported} (recipe {self.recipe.name!r}); "
                               "use engine='zennit'")
        self.composite = Composite(canonizers=canonizers_for(model))
        self.patched: list[nn.Module] = []

    def __enter__(self) -> nn.Module:
        rules = assign_rules(self.model, self.recipe)
        self.composite.register(self.model)
        self.patched = _patch(self.model, rules, self.recipe.maxpool)
        return self.model

    def __exit__(self, *exc) -> None:
        for module in self.patched:
            del module.forward
            for key in ("pair", "_lrp_params", "_lrp_rule"):
                module.__dict__.pop(key, None)
        self.patched = []
        self.composite.remove()


def supports(recipe) -> list[str]:
    """The rules of `recipe` the fast engine lacks (empty: it runs the recipe)."""
    kinds = {recipe.first, recipe.lower, recipe.upper} | ({recipe.depthwise} if recipe.depthwise else set())
    return sorted(kinds - FAST_RULES) + ([recipe.dense] if recipe.dense != "epsilon" else [])


def fast_lrp_relevance(model: nn.Module, images: torch.Tensor, targets: Optional[torch.Tensor] = None,
                       recipe: Optional[str] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, relevance) as `lrp.lrp_relevance`, on the fast engine, prepared around this call."""
    from .lrp import prepared_relevance

    with fast_lrp(model, recipe) as patched:
        return prepared_relevance(patched, images, targets)
