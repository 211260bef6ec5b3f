"""The grid a network's first layers lay over the image: the product of their strides."""

from __future__ import annotations

from torch import nn


def stem_stride(model: nn.Module) -> int:
    """The product of the strides at the bottom of the network, up to the first layer that does
    not downsample: the grid the flat rule's squares and a stride-2 stem's dots lie on (ResNet50:
    conv 2 x max-pool 2 = 4; EfficientNet-B0: 2). Below this grid the pixel-level pattern of an
    LRP map is set by the input layer's rule, not by the model (render.display_map)."""
    stride = 1
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.MaxPool2d)):
            step = module.stride if isinstance(module.stride, int) else module.stride[0]
            if step == 1:
                break
            stride *= step
    return stride
