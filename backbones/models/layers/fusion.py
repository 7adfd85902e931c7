"""Folding BatchNorm into the layer before it, for the deploy (inference) form.

Each fusable module in this package has a ``fuse()`` method that returns the module
that replaces it (possibly itself, changed in place). :func:`fuse_modules` walks a
model and applies them, so a family only writes the local rule next to its module.
"""
import torch
from torch import nn


def bn_scale_shift(norm: nn.modules.batchnorm._BatchNorm):
    """(scale, shift) with ``norm(x) == scale * x + shift`` per channel in eval mode."""
    scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
    return scale, norm.bias - scale * norm.running_mean


@torch.no_grad()
def scale_conv_output(conv: nn.Conv2d, scale: torch.Tensor, shift: torch.Tensor) -> nn.Conv2d:
    """Return a conv equal to ``scale * conv(x) + shift`` per output channel."""
    fused = nn.Conv2d(
        conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
        padding=conv.padding, dilation=conv.dilation, groups=conv.groups, bias=True,
        padding_mode=conv.padding_mode, device=conv.weight.device, dtype=conv.weight.dtype)
    fused.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
    bias = shift if conv.bias is None else shift + scale * conv.bias
    fused.bias.copy_(bias)
    return fused


@torch.no_grad()
def fuse_conv_bn(conv: nn.Conv2d, norm: nn.BatchNorm2d) -> nn.Conv2d:
    """Return a conv with bias equal to ``norm(conv(x))`` in eval mode."""
    return scale_conv_output(conv, *bn_scale_shift(norm))


@torch.no_grad()
def fuse_bn_linear(norm: nn.BatchNorm1d, linear: nn.Linear) -> nn.Linear:
    """Return a linear layer equal to ``linear(norm(x))`` in eval mode."""
    scale, shift = bn_scale_shift(norm)
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


# ---- structural reparameterisation: kernels that sum or compose into one ---------------
def pad_kernel(weight: torch.Tensor, size) -> torch.Tensor:
    """Zero-pad a conv weight's (kh, kw) around its centre to ``size``.

    A k-kernel with padding k // 2 equals the padded K-kernel with padding K // 2, so the
    sizes must differ by an even number on each axis.
    """
    size = (size, size) if isinstance(size, int) else tuple(size)
    extra = [want - have for have, want in zip(weight.shape[-2:], size)]
    if any(e < 0 or e % 2 for e in extra):
        raise ValueError(f'cannot centre a {tuple(weight.shape[-2:])} kernel in {size}')
    return nn.functional.pad(weight, [extra[1] // 2, extra[1] // 2, extra[0] // 2, extra[0] // 2])


def dilate_kernel(weight: torch.Tensor, dilation: int) -> torch.Tensor:
    """The dense kernel of a dilated conv: taps spread ``dilation`` apart, zeros between."""
    kh, kw = weight.shape[-2:]
    dense = weight.new_zeros(*weight.shape[:-2], (kh - 1) * dilation + 1, (kw - 1) * dilation + 1)
    dense[..., ::dilation, ::dilation] = weight
    return dense


def compose_row_column(row: torch.Tensor, column: torch.Tensor) -> torch.Tensor:
    """The kxk depthwise kernel of a bias-free 1xk conv followed by a kx1 conv.

    ``row`` is (C, 1, 1, k), ``column`` (C, 1, k, 1). With 'same' zero padding on each
    and no bias on the first, the pair equals one kxk conv exactly, strides included
    (a (1, s) then (s, 1) stride is an (s, s) stride).
    """
    return column * row


@torch.no_grad()
def fuse_bn_pointwise_conv(norm: nn.modules.batchnorm._BatchNorm, conv: nn.Conv2d) -> nn.Conv2d:
    """Return a 1x1 conv equal to ``conv(norm(x))`` in eval mode (BN before the conv).

    Exact only for an unpadded 1x1 conv with groups=1: then no padded zero ever meets
    the BN shift.
    """
    if conv.kernel_size != (1, 1) or conv.groups != 1 or conv.padding != (0, 0):
        raise ValueError('a BN folds into a following conv only if it is an unpadded 1x1 conv with groups=1')
    scale, shift = bn_scale_shift(norm)
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, 1, stride=conv.stride, bias=True,
                      device=conv.weight.device, dtype=conv.weight.dtype)
    fused.weight.copy_(conv.weight * scale.view(1, -1, 1, 1))
    bias = conv.weight.flatten(1) @ shift
    if conv.bias is not None:
        bias = bias + conv.bias
    fused.bias.copy_(bias)
    return fused


@torch.no_grad()
def depthwise_conv(weight: torch.Tensor, bias: torch.Tensor, stride: int = 1) -> nn.Conv2d:
    """A depthwise conv with 'same' padding holding ``weight`` (C, 1, kh, kw) and ``bias``."""
    channels, _, kh, kw = weight.shape
    conv = nn.Conv2d(channels, channels, (kh, kw), stride=stride, padding=(kh // 2, kw // 2),
                     groups=channels, bias=True, device=weight.device, dtype=weight.dtype)
    conv.weight.copy_(weight)
    conv.bias.copy_(bias)
    return conv
