"""Plain norm layers where timm builds norms with a built-in activation (no mm imports).

timm's ``ConvNormAct`` keeps its activation inside its norm (``BatchNormAct2d``). A SyncBN
converter that rebuilds every ``_BatchNorm`` as a bare ``SyncBatchNorm`` (mmengine's
``convert_sync_batchnorm``, as its Runner applies with ``sync_bn='torch'``, and torch's own)
then drops that activation without a word. :func:`split_norm_activations` gives such a
model plain ``BatchNorm2d`` layers and lets the parent apply the activation; the
state_dict keys stay those of timm's layout, and so do the outputs.
"""
from typing import Optional

import torch
from timm.layers import BatchNormAct2d
from timm.layers import ConvNormAct as TimmConvNormAct
from torch import nn

__all__ = ['ConvNormAct', 'split_norm_activations']


def plain_batchnorm(norm: nn.BatchNorm2d) -> nn.BatchNorm2d:
    """A plain ``BatchNorm2d`` holding ``norm``'s own parameters and buffers (the same tensors)."""
    plain = nn.BatchNorm2d(norm.num_features, norm.eps, norm.momentum, norm.affine, norm.track_running_stats,
                           device='meta')
    plain.load_state_dict(norm.state_dict(keep_vars=True), assign=True)
    return plain.train(norm.training)


class ConvNormAct(nn.Module):
    """conv -> BatchNorm2d -> activation, with timm's ``ConvNormAct`` keys (``conv.*``, ``bn.*``)
    but a plain norm: the activation (and timm's optional dropout and anti-aliasing) is
    this module's own."""

    def __init__(self, conv: nn.Module, bn: nn.BatchNorm2d, act: Optional[nn.Module] = None,
                 drop: Optional[nn.Module] = None, aa: Optional[nn.Module] = None):
        super().__init__()
        self.conv, self.bn = conv, bn
        self.drop = drop if drop is not None else nn.Identity()
        self.act = act if act is not None else nn.Identity()
        self.aa = aa if aa is not None else nn.Identity()

    @classmethod
    def of(cls, module: TimmConvNormAct) -> 'ConvNormAct':
        """The same layer as timm's ``module`` (same tensors), its activation taken out of its norm."""
        norm = module.bn
        return cls(module.conv, plain_batchnorm(norm), norm.act, norm.drop, getattr(module, 'aa', None))

    @property
    def in_channels(self) -> int:
        return self.conv.in_channels

    @property
    def out_channels(self) -> int:
        return self.conv.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.aa(self.act(self.drop(self.bn(self.conv(x)))))


def split_norm_activations(model: nn.Module) -> nn.Module:
    """Replace, in place, every timm ``ConvNormAct`` whose norm applies an activation by a
    :class:`ConvNormAct` with a plain ``BatchNorm2d``; returns ``model``."""
    for name, child in list(model.named_children()):
        if isinstance(child, TimmConvNormAct) and type(child.bn) is BatchNormAct2d:
            setattr(model, name, ConvNormAct.of(child))
        else:
            split_norm_activations(child)
    return model
