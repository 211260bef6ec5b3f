"""Canonizers for timm's ResNet50, EfficientNet-B0 and our attention head (zennit's shape: each
one a small class that rewrites modules while registered and restores them on `remove`).

Why these exist: zennit's `ResNetCanonizer` matches torchvision's classes only. On timm's
ResNet50 it merges the BatchNorms but leaves `x += shortcut` as an anonymous tensor add, so LRP
relevance through the residual connections is not distributed between the two branches (the
"every CRP channel looks the same" failure). timm's EfficientNet hides BatchNorm and activation
in one `BatchNormAct2d` module, which zennit's sequential merger does not see, and gates every
block with squeeze-excitation. Nobody publishes canonizers for these; here they are.

`canonizers_for(model)` returns the list the model's architecture spec names.
"""

from __future__ import annotations

import torch
from torch import nn
from zennit.canonizers import AttributeCanonizer, Canonizer, MergeBatchNorm
from zennit.layer import Sum
from zennit.types import BatchNorm, Convolution

from ..errors import ExplainError


class MergeBatchNormExact(MergeBatchNorm):
    """zennit 0.4.6's merge leaves each BatchNorm computing x / sqrt(1 + eps) (it sets
    running_var to 1); on ResNet50 that drifts logits by ~1e-4 relative. zennit 1.0 sets
    running_var to 1 - eps so the BatchNorm is exactly the identity; so do we."""

    @staticmethod
    def merge_batch_norm(modules, batch_norm):
        MergeBatchNorm.merge_batch_norm(modules, batch_norm)
        batch_norm.running_var.data = torch.full_like(batch_norm.running_var.data, 1.0 - batch_norm.eps)


class MergeBatchNormAfterConv(MergeBatchNormExact):
    """Merge every BatchNorm (including timm's BatchNormAct2d, whose activation stays) into the
    convolution registered right before it in the same parent. Child order, not leaf order:
    BatchNormAct2d has children (its activation), so zennit's leaf-based merger skips it."""

    def apply(self, root_module: nn.Module) -> list:
        instances = []
        for parent in root_module.modules():
            previous = None
            for child in parent.children():
                if isinstance(previous, Convolution) and isinstance(child, BatchNorm):
                    instance = self.copy()
                    instance.register((previous,), child)
                    instances.append(instance)
                previous = child
        return instances


class NoInplaceActivations(Canonizer):
    """zennit's hooks cannot see through in-place activations (timm builds ReLU(inplace=True));
    turn `inplace` off while attributing, restore it afterwards."""

    def __init__(self):
        self.modules: list[nn.Module] = []

    def apply(self, root_module: nn.Module) -> list:
        instance = NoInplaceActivations()
        instance.register([m for m in root_module.modules() if getattr(m, "inplace", False) is True])
        return [instance]

    def register(self, modules) -> None:
        self.modules = modules
        for module in modules:
            module.inplace = False

    def remove(self) -> None:
        for module in self.modules:
            module.inplace = True


def _is_class(module: nn.Module, *names: str) -> bool:
    # by name, so importing this file does not depend on timm's internal module paths
    return type(module).__name__ in names and type(module).__module__.startswith("timm.")


class TimmBottleneckCanonizer(AttributeCanonizer):
    """timm ResNet Bottleneck / BasicBlock: the residual add becomes a zennit Sum module created
    here (at canonization time, once: a Sum created inside forward would get no rule and double
    the relevance), followed by act3 / act2 as in the original block."""

    def __init__(self):
        super().__init__(self._attribute_map)

    @classmethod
    def _attribute_map(cls, name, module):
        if _is_class(module, "Bottleneck", "BasicBlock"):
            forward = cls.forward_bottleneck if hasattr(module, "conv3") else cls.forward_basic
            return {"forward": forward.__get__(module), "canonizer_sum": Sum()}
        return None

    @staticmethod
    def forward_bottleneck(self, x):
        shortcut = x
        x = self.act1(self.bn1(self.conv1(x)))
        x = self.aa(self.act2(self.drop_block(self.bn2(self.conv2(x)))))
        return TimmBottleneckCanonizer.residual(self, self.bn3(self.conv3(x)), shortcut, self.act3)

    @staticmethod
    def forward_basic(self, x):
        shortcut = x
        x = self.aa(self.act1(self.drop_block(self.bn1(self.conv1(x)))))
        return TimmBottleneckCanonizer.residual(self, self.bn2(self.conv2(x)), shortcut, self.act2)

    @staticmethod
    def residual(block, x, shortcut, act):
        """The common tail of both blocks: optional SE and drop-path, the shortcut, the Sum."""
        if block.se is not None:
            x = block.se(x)
        if block.drop_path is not None:
            x = block.drop_path(x)
        if block.downsample is not None:
            shortcut = block.downsample(shortcut)
        return act(summed(block.canonizer_sum, shortcut, x))


def summed(sum_module: Sum, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a + b through zennit's `Sum`, which takes its operands stacked on a last dimension so
    that its rule sees both. An engine that handles the pair itself sets `sum_module.pair`
    (fast_lrp does: stacking and reducing over that dimension cost more than the convolution
    next to it on CPU)."""
    pair = getattr(sum_module, "pair", None)
    if pair is not None:
        return pair(a, b)
    return sum_module(torch.stack([a, b], dim=-1))


def constant_gate(x: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    """x * gate in the forward pass, identity in the backward pass.

    The squeeze-excitation gate is treated as a constant, so relevance flows through the signal
    only. For y = g * x with g constant, LRP's epsilon rule gives R_x = (g x / y) R_y = R_y: all
    relevance passes through unchanged, which is what the detached residual below computes
    (its gradient is exactly 1)."""
    return x + (x * (gate - 1)).detach()


class EfficientNetBlockCanonizer(AttributeCanonizer):
    """timm EfficientNet blocks: the skip connection of InvertedResidual and
    DepthwiseSeparableConv as a Sum, and SqueezeExcite's gate as a constant."""

    def __init__(self):
        super().__init__(self._attribute_map)

    @classmethod
    def _attribute_map(cls, name, module):
        if _is_class(module, "InvertedResidual", "DepthwiseSeparableConv"):
            if getattr(module, "conv_s2d", None) is not None:
                raise ExplainError(f"{name}: space-to-depth EfficientNet blocks are not canonized")
            forward = cls.forward_inverted if hasattr(module, "conv_pwl") else cls.forward_separable
            return {"forward": forward.__get__(module), "canonizer_sum": Sum()}
        if _is_class(module, "SqueezeExcite"):
            return {"forward": cls.forward_squeeze_excite.__get__(module)}
        return None

    @staticmethod
    def forward_inverted(self, x):
        shortcut = x
        x = self.bn1(self.conv_pw(x))
        x = self.aa(self.bn2(self.conv_dw(x)))
        return EfficientNetBlockCanonizer.skip(self, self.bn3(self.conv_pwl(self.se(x))), shortcut)

    @staticmethod
    def forward_separable(self, x):
        shortcut = x
        x = self.aa(self.bn1(self.conv_dw(x)))
        return EfficientNetBlockCanonizer.skip(self, self.bn2(self.conv_pw(self.se(x))), shortcut)

    @staticmethod
    def skip(block, x, shortcut):
        """The common tail of both blocks: drop-path and the skip connection as the Sum."""
        if not block.has_skip:
            return x
        return summed(block.canonizer_sum, shortcut, block.drop_path(x))

    @staticmethod
    def forward_squeeze_excite(self, x):
        # from a detached input: the gate's own layers see no gradient (and zennit's hooks on
        # them, which need autograd enabled, stay idle)
        gate = self.gate(self.conv_expand(self.act1(self.conv_reduce(x.detach().mean((2, 3), keepdim=True)))))
        return constant_gate(x, gate)


class ConstantAttentionPool(nn.Module):
    """Attention pooling with the attention weights as constants (the CP-LRP treatment): a
    plain weighted sum of the feature vectors, so the epsilon rule attached to this module
    distributes relevance over positions and channels in proportion to a_i * h_i."""

    def __init__(self, pool: nn.Module):
        super().__init__()
        self.__dict__["pool"] = pool  # not a child: its Linear layers must not be hooked twice

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        b, c, h, w = features.shape
        tokens = features.flatten(2).transpose(1, 2)
        # no `last_attention` side effect here: the fast LRP engine re-evaluates this module
        # inside torch.func transforms, whose tensors must not leak into module state
        weights = self.pool.attention(tokens.detach()).detach()
        return torch.bmm(weights.unsqueeze(1), tokens).squeeze(1)


class AttentionPoolCanonizer(AttributeCanonizer):
    def __init__(self):
        super().__init__(self._attribute_map)

    @classmethod
    def _attribute_map(cls, name, module):
        if type(module).__name__ == "GatedAttentionPool":
            constant = ConstantAttentionPool(module)
            # __call__, not forward: the rule's hooks fire on the module call
            return {"forward": constant.__call__, "canonizer_pool": constant}
        return None


# The structural canonizers an architecture spec can name (ArchitectureSpec.canonizers).
CANONIZERS = {
    "timm_resnet": TimmBottleneckCanonizer,
    "timm_efficientnet": EfficientNetBlockCanonizer,
    "gated_attention": AttentionPoolCanonizer,
}


def canonizers_for(model: nn.Module) -> list[Canonizer]:
    """The canonizers the model's architecture spec names, in the order they must apply:
    structure first, then BatchNorm merges (every model), then in-place activations off."""
    from ..training.models import spec_of_model

    spec = spec_of_model(model)
    unknown = [name for name in spec.canonizers if name not in CANONIZERS]
    if unknown:
        raise ExplainError(f"architecture {spec.name!r} names unknown canonizers {unknown}; known: {sorted(CANONIZERS)}")
    return [CANONIZERS[name]() for name in spec.canonizers] + [MergeBatchNormAfterConv(), NoInplaceActivations()]
