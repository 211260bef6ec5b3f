"""LRP with zennit: the rules of a named recipe (rules.py; the architecture spec names its
default) with our canonizers, norm for sums and average pools, epsilon for the
constant-attention pooling, and ReLUs left to autograd.

Relevance starts from the target logit's value (targets.start_relevance), so the input heatmap
sums to that logit when relevance is conserved: always with a recipe that ignores biases (the
defaults), and with biases zeroed for the others (both tested).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn
from zennit.composites import LAYER_MAP_BASE
from zennit.core import BasicHook, Composite, Hook, mod_params, stabilize
from zennit.layer import Sum
from zennit.rules import AlphaBeta, Epsilon, Flat, Gamma, Norm, WSquare, ZBox, ZPlus
from zennit.types import AvgPool

from .canonizers import ConstantAttentionPool, canonizers_for
from .rules import SHARED, Recipe, Rule, assign_rules, get_recipe
from .targets import resolve_targets, start_relevance


class ZPlusNonNegative(ZPlus):
    """zennit's ZPlus, minus work that contributes nothing: ZPlus evaluates the layer twice,
    on the positive inputs with positive weights and on the negative inputs with negative
    weights. Behind a ReLU every input is >= 0, so the second term is exactly zero (zero inputs,
    zero bias); we skip it then and fall back to zennit's two-term rule otherwise. Same
    relevance (tested against zennit's ZPlus), about a third less compute per convolution."""

    def backward(self, module, grad_input, grad_output):
        original = self.stored_tensors["input"][0].detach()
        if original.min() < 0:
            return super().backward(module, grad_input, grad_output)
        positive_params = self.param_modifiers[0]
        inputs = original.requires_grad_()
        with mod_params(module, positive_params, param_keys=self.param_keys, require_params=self.require_params) \
                as modified, torch.autograd.enable_grad():
            outputs = modified.forward(inputs)
        gradient, = torch.autograd.grad(outputs, inputs, grad_outputs=grad_output[0] / stabilize(outputs))
        relevance = inputs * gradient
        return tuple(relevance if g.shape == relevance.shape else None for g in grad_input)

    def copy(self):
        hook = ZPlusNonNegative()
        hook.param_modifiers = self.param_modifiers
        return hook


def _without_bias(hook: BasicHook) -> BasicHook:
    """The same rule with the layer's bias read as zero: the relevance a bias would absorb
    goes to the inputs instead (conserved)."""
    hook.param_modifiers = [
        (lambda modifier: (lambda param, name: torch.zeros_like(param) if name == "bias" else modifier(param, name)))(m)
        for m in hook.param_modifiers]
    return hook


class SharedBias(BasicHook):
    """Epsilon or gamma with the bias's relevance shared back to the inputs, in proportion to
    |x_i w'_ij| (rules.Rule.bias == "share"). With z_j = sum_i x_i w'_ij + b'_j and
    s_j = R_j / z_j:  R_i = x_i sum_j w'_ij s_j + |x_i| sum_j |w'_ij| b'_j s_j / sum_i |x_i w'_ij|.
    The inputs receive all of R_j (conservation) and the denominator is the layer's own output,
    so no division by a bias-free sum that can be near zero. Three evaluations of the layer:
    (W', b'), (W', 0) for the bias b' = z - W'x, and (|W'|, 0) on |x|.

    `by_input` (Rule.bias == "share_input"): in proportion to |x_i| alone, the weights replaced
    by ones in the third evaluation (every input of a unit's receptive field counts, whatever
    its weight). Why offered: the fast engine then needs no |W'||x| convolution per layer."""

    def __init__(self, gamma: float = 0.0, epsilon: float = 1e-6, epsilon_std: float = 0.0, by_input: bool = False):
        self.gamma, self.epsilon, self.epsilon_std, self.by_input = gamma, epsilon, epsilon_std, by_input

        def modified(param, _name):
            return param + gamma * param.clamp(min=0)

        def no_bias(transform):
            return lambda param, name: torch.zeros_like(param) if name == "bias" else transform(modified(param, name))

        def mapper(grad, outputs):
            z, wx, d = outputs
            s = grad / stabilize(z, layer_epsilon(z, epsilon, epsilon_std))
            return [s, torch.zeros_like(grad), s * (z - wx) / stabilize(d, epsilon)]

        super().__init__(
            input_modifiers=[lambda x: x, lambda x: x, lambda x: x.abs()],
            param_modifiers=[modified, no_bias(lambda p: p), no_bias(torch.ones_like if by_input else torch.abs)],
            output_modifiers=[lambda output: output] * 3,
            gradient_mapper=mapper,
            reducer=lambda inputs, gradients: inputs[0] * gradients[0] + inputs[2] * gradients[2])

    def copy(self):
        return SharedBias(self.gamma, self.epsilon, self.epsilon_std, self.by_input)


def layer_epsilon(z: torch.Tensor, epsilon: float, epsilon_std: float):
    """The epsilon rule's stabiliser for a layer's output z (batch first): `epsilon`, plus for a
    convolution `epsilon_std` x the standard deviation of each image's outputs (shape (B, 1, 1,
    1)). Why relative: zennit's absolute 1e-6 left EfficientNet's map as sensitive to
    imperceptible noise as to a re-initialised head, and an absolute 1e-3 that fixed it on one
    model silenced the upper layers of another trained at 64 px (docs/explanation-choice.md).
    Dense layers keep `epsilon`: a std over a few logits says nothing about their scale."""
    if not epsilon_std or z.dim() <= 2:
        return epsilon
    return z.detach().flatten(1).std(1).mul(epsilon_std).add(epsilon).view(-1, *([1] * (z.dim() - 1)))


class ProportionalMaxPool(Hook):
    """Max-pooling's relevance shared among each window's inputs in proportion to their value
    (the norm rule of the same window as a sum pool), instead of all of it to the maximum:
    R_i = x_i sum_j [i in window j] R_j / sum_{i' in window j} x_i'. Behind a ReLU every x >= 0,
    so the shares are >= 0 and sum to R_j (rules.Recipe.maxpool == "proportional")."""

    def forward(self, module, input, output):
        self.stored_tensors["input"] = input

    def backward(self, module, grad_input, grad_output):
        x = self.stored_tensors["input"][0].detach().requires_grad_()
        with torch.autograd.enable_grad():
            z = window_sums(x, module)
        gradient, = torch.autograd.grad(z, x, grad_outputs=grad_output[0] / stabilize(z))
        return (x * gradient,) + (None,) * (len(grad_input) - 1)

    def copy(self):
        return ProportionalMaxPool()


def window_sums(x: torch.Tensor, pool: nn.MaxPool2d) -> torch.Tensor:
    """The sum over each of `pool`'s windows (padding adds zeros: no relevance goes there)."""
    kernel = nn.modules.utils._pair(pool.kernel_size)
    return nn.functional.avg_pool2d(x, kernel, pool.stride, pool.padding, ceil_mode=pool.ceil_mode,
                                    count_include_pad=True) * (kernel[0] * kernel[1])


def _zbox(rule: Rule) -> ZBox:
    low, high = (torch.tensor(b, dtype=torch.float32).view(1, -1, 1, 1) for b in rule.bounds)
    return ZBox(low=low, high=high)


def zennit_rule(rule: Rule, zplus=ZPlusNonNegative) -> BasicHook:
    """The zennit hook for one of our rules (rules.RULE_KINDS)."""
    if rule.bias in SHARED and rule.kind in ("epsilon", "gamma"):
        return SharedBias(rule.gamma if rule.kind == "gamma" else 0.0, rule.epsilon, rule.epsilon_std,
                          by_input=rule.bias == "share_input")
    hook = {"flat": lambda: Flat(),
            "zplus": zplus,
            "epsilon": lambda: Epsilon(epsilon=rule.epsilon),
            "gamma": lambda: Gamma(gamma=rule.gamma),
            "alpha2beta1": lambda: AlphaBeta(alpha=2.0, beta=1.0),
            # zennit's w^2 squares the bias too; ours reads it as 0, as flat does (conserving)
            "wsquare": lambda: _without_bias(WSquare()),
            "zbox": lambda: _zbox(rule)}[rule.kind]()
    # z+ and alpha-beta with a shared bias: their bias-free sums are >= 0 (no instability), so the
    # bias is read as 0 (its relevance goes to the inputs in proportion to their positive part);
    # flat and w^2 never see a bias, and z-box's cancels (b - b+ - b- = 0)
    return hook if rule.bias == "absorb" or rule.kind in ("flat", "wsquare", "zbox") else _without_bias(hook)


class RecipeComposite(Composite):
    """A recipe's rules on one model's convolutions and linear layers (by name, from
    rules.assign_rules), plus the structural rules every recipe shares.

    `hook_relus=False` (the default) leaves ReLUs to plain autograd instead of zennit's Pass
    rule. Same relevance: Pass differs from the ReLU gradient only where the ReLU output is 0,
    and every rule above a ReLU in our architectures (z+, gamma, epsilon, alpha-beta and norm:
    all of them multiply by the input, the constant-gate identity) gives an input of 0 no
    relevance. Saves a hook and a copy of every activation (tested equal to the hooked version)."""

    def __init__(self, model: nn.Module, recipe: Recipe, canonizers=None, zplus=ZPlusNonNegative,
                 hook_relus: bool = False):
        rules = {name: zennit_rule(rule, zplus) for name, rule in assign_rules(model, recipe).items()}
        structural = LAYER_MAP_BASE if hook_relus else [(Sum, Norm()), (AvgPool, Norm())]
        structural = [(ConstantAttentionPool, Epsilon())] + structural
        if recipe.maxpool == "proportional":
            structural = [(nn.MaxPool2d, ProportionalMaxPool())] + structural
        self.recipe = recipe

        def module_map(ctx, name, module):
            if name in rules:
                return rules[name]
            for kind, hook in structural:
                if isinstance(module, kind):
                    return hook
            return None

        super().__init__(module_map=module_map, canonizers=canonizers)


def composite_for(model: nn.Module, recipe: Optional[str] = None, **options) -> RecipeComposite:
    """The composite of `recipe` (default: the one the model's architecture spec names), with
    the model's canonizers."""
    from ..training.models import spec_of_model

    return RecipeComposite(model, get_recipe(recipe or spec_of_model(model).composite),
                           canonizers=canonizers_for(model), **options)


def default_composite(model: nn.Module) -> RecipeComposite:
    return composite_for(model)


def prepared_relevance(model: nn.Module, images: torch.Tensor, targets: Optional[torch.Tensor]):
    """(logits (B, K), input relevance (B, 3, H, W)) on a model whose backward already computes
    LRP relevance (zennit's composite registered, or the fast engine's patches in place).
    `targets`: None or PREDICTED entries mean the predicted class (targets.py)."""
    x = images.detach().clone().requires_grad_()
    with torch.enable_grad():
        logits = model(x)
        targets = resolve_targets(logits, targets)
        relevance, = torch.autograd.grad(logits, x, grad_outputs=start_relevance(logits, targets))
    return logits.detach(), relevance.detach()


def lrp_relevance(model: nn.Module, images: torch.Tensor, targets: Optional[torch.Tensor] = None,
                  composite=None) -> tuple[torch.Tensor, torch.Tensor]:
    """LRP through zennit's hooks (the reference engine): `composite` (default: the spec's) is
    registered for this call and the model restored afterwards. Model in eval mode."""
    composite = composite or default_composite(model)
    with composite.context(model) as hooked:
        return prepared_relevance(hooked, images, targets)
