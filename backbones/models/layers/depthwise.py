"""A depthwise conv whose CPU backward pass is computed by two forward convolutions.

PyTorch's CPU backward of a depthwise conv (one input and one output channel per group)
is several times slower than its forward: on RecNeXt-M3 at 512x512 it was a quarter of a
training step. Both gradients are themselves depthwise convolutions, which run on the
fast forward kernels:

* grad input  = the transposed depthwise conv of grad output;
* grad weight = for each channel, the correlation of the padded input with grad output
  (dilated by the stride), i.e. a depthwise conv whose "kernel" is grad output, with
  the batch folded into the channels and summed afterwards.

The forward is the very same ``F.conv2d`` call as :class:`torch.nn.Conv2d`'s, so
outputs are bit-identical and state_dict keys unchanged; gradients agree to float
rounding. Elsewhere (CUDA, dilation, autocast, no autograd) it is a plain ``nn.Conv2d``.
"""
import torch
import torch.nn.functional as F
from torch import nn


class _DepthwiseConvFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, stride, padding):
        ctx.save_for_backward(x, weight)
        ctx.stride, ctx.padding = stride, padding
        return F.conv2d(x, weight, None, stride, padding, 1, weight.shape[0])

    @staticmethod
    def backward(ctx, grad_out):
        x, weight = ctx.saved_tensors
        stride, padding = ctx.stride, ctx.padding
        channels, kernel = weight.shape[0], weight.shape[-2:]
        grad_x = grad_weight = None
        if ctx.needs_input_grad[0]:
            # The transposed conv; output_padding restores the rows a stride dropped.
            covered = [(o - 1) * s - 2 * p + k for o, s, p, k in zip(grad_out.shape[-2:], stride, padding, kernel)]
            grad_x = F.conv_transpose2d(grad_out, weight, None, stride, padding,
                                        [size - c for size, c in zip(x.shape[-2:], covered)], channels)
        if ctx.needs_input_grad[1]:
            batch, _, height, width = x.shape
            # (C*N) groups, each correlating one input map with its grad-output map
            # (dilated by the stride); the batch is summed afterwards.
            per_sample = F.conv2d(x.transpose(0, 1).reshape(1, channels * batch, height, width),
                                  grad_out.transpose(0, 1).reshape(channels * batch, 1, *grad_out.shape[-2:]),
                                  None, 1, padding, stride, channels * batch)
            grad_weight = (per_sample[..., :kernel[0], :kernel[1]]
                           .reshape(channels, batch, *kernel).sum(1).unsqueeze(1))
        return grad_x, grad_weight, None, None


class DepthwiseConv2d(nn.Conv2d):
    """``nn.Conv2d`` with ``groups == in_channels == out_channels`` and a fast CPU backward."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, groups: int, **kwargs):
        super().__init__(in_channels, out_channels, kernel_size, groups=groups, **kwargs)
        if not in_channels == out_channels == groups:
            raise ValueError(f'DepthwiseConv2d needs in_channels == out_channels == groups, got '
                             f'{in_channels}, {out_channels}, {groups}; use nn.Conv2d')

    def _fast_backward_applies(self, x: torch.Tensor) -> bool:
        return (x.device.type == 'cpu' and torch.is_grad_enabled() and self.bias is None
                and self.dilation == (1, 1) and isinstance(self.padding, tuple)
                and self.padding_mode == 'zeros' and not torch.is_autocast_enabled('cpu')
                and (x.requires_grad or self.weight.requires_grad))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._fast_backward_applies(x):
            return _DepthwiseConvFunction.apply(x, self.weight, self.stride, self.padding)
        return super().forward(x)
