"""Folding BatchNorm into the layer before it, for the deploy (inference) form.

Each fusable module in this package has a ``fuse()`` method that returns the module
that replaces it (possibly itself, changed in place). :func:`fuse_modules` walks a
model and applies them, so a family only writes the local rule next to its module.
"""
import torch
from torch import nn


@torch.no_grad()
def fuse_conv_bn(conv: nn.Conv2d, norm: nn.BatchNorm2d) -> nn.Conv2d:
    """Return a conv with bias equal to ``norm(conv(x))`` in eval mode."""
    scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
    bias = norm.bias - scale * norm.running_mean
    if conv.bias is not None:
        bias = bias + scale * conv.bias
    fused = nn.Conv2d(
        conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
        padding=conv.padding, dilation=conv.dilation, groups=conv.groups, bias=True,
        padding_mode=conv.padding_mode, device=conv.weight.device, dtype=conv.weight.dtype)
    fused.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
    fused.bias.copy_(bias)
    return fused


@torch.no_grad()
def fuse_bn_linear(norm: nn.BatchNorm1d, linear: nn.Linear) -> nn.Linear:
    """Return a linear layer equal to ``linear(norm(x))`` in eval mode."""
    scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
    shift = norm.bias - scale * norm.running_mean
    fused = nn.Linear(linear.in_features, linear.out_features, bias=True,
                      device=linear.weight.device, dtype=linear.weight.dtype)
    fused.weight.copy_(linear.weight * scale.view(1, -1))
    bias = linear.weight @ shift
    if linear.bias is not None:
        bias = bias + linear.bias
    fused.bias.copy_(bias)
    return fused


@torch.no_grad()
def fuse_modules(module: nn.Module) -> nn.Module:
    """Replace every child that has ``fuse()`` by its fused form, depth first."""
    for name, child in list(module.named_children()):
        if hasattr(child, 'fuse'):
            child = child.fuse()
            setattr(module, name, child)
        fuse_modules(child)
    return module
