"""Counting a model's size the way the papers do: parameters, and multiply-accumulates of
convolutions, linear layers and matmuls (FLOPs / 2; element-wise ops, norms and resizes are
not counted) by torch's FlopCounterMode. Shared by the benchmark tools; no mm imports."""
from typing import Optional

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count, register_flop_formula

MAC_COUNTER = 'torch.utils.flop_counter.FlopCounterMode'


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# The deploy forms run oneDNN's fused conv kernels on CPU; count them as the convs they are.
@register_flop_formula(torch.ops.mkldnn._convolution_pointwise)
def _fused_conv_flop(x_shape, *args, out_shape=None, **kwargs) -> int:
    # (X, W, B, ...) for conv + activation; (X, other, W, B, ...) for conv + binary op.
    binary = args[1] is not None and len(args[1]) == 4
    return conv_flop_count(x_shape, args[1] if binary else args[0], out_shape)


def count_macs(model: nn.Module, size: int = 224, height: Optional[int] = None) -> int:
    """Multiply-accumulates of one image through ``model`` (FLOPs / 2)."""
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model(torch.randn(1, 3, height or size, size))
    return counter.get_total_flops() // 2
