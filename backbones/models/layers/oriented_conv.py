"""Oriented 1D depthwise convolution in pure PyTorch (CPU and CUDA, autograd, any size).

Reference: Kirchmeyer & Deng, "Convolutional Networks with Oriented 1D Kernels"
(ICCV 2023, https://github.com/princeton-vl/Oriented1D), whose op is a JIT-compiled CUDA
kernel. Semantics, matched exactly (weight (C, 1, 1, K), K odd, pad = K // 2)::

    out[n, c, p, q] = bias[c] + sum_s w[c, s] * x[n, c, p*stride + trunc(-sin(theta_c) * (s - pad)),
                                                     q*stride + trunc( cos(theta_c) * (s - pad))]

with zeros outside the image and an output of ceil(H / stride) x ceil(W / stride). The
offsets are computed in float32, as the reference kernels do (``sincosf``): at exactly
90 degrees float32 gives sin = 1 while float64 would give 0.99999... and move a tap.

How it runs fast without a custom kernel: every channel with the same angle has the same
integer tap offsets, so a channel group is one dense depthwise conv whose kernel holds the
taps (taps landing on one pixel add up). A diagonal line would need a large, mostly empty
window (21x21 for 31 taps at 45 degrees), so the image is first sheared by an integer
slope (row h shifted by s*h, a zero-copy view of a padded buffer): the line then becomes
(nearly) vertical or horizontal and the window small (21x1 at 45 degrees, 11x7 at 22.5).
The output is sheared back the same way. All of it is ordinary differentiable ops, and
it exports: the taps reach the dense kernel through a constant 0/1 placement matrix (a
matmul, so taps that share a pixel add up without an ``index_add`` over duplicated
indices), and the channel plan is built from theta's values before tracing, never while.
"""
import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .tracing import is_tracing

__all__ = ['OrientedConv1d', 'oriented_conv1d', 'oriented_angles', 'prepare_plans', 'tap_offsets']

# Integer shears tried per channel group; 3 covers every angle of 8 directions.
MAX_SHEAR = 3


def oriented_angles(channels: int, offset: float = 0.0, directions: int = 8) -> torch.Tensor:
    """Per-channel angles: channel c is in group n = (N(c + 1) - 1) // C and gets
    theta = pi * ((n / N + offset) mod 1), as float32."""
    groups = [(directions * (c + 1) - 1) // channels for c in range(channels)]
    return torch.tensor([math.pi * ((n / directions + offset) % 1) for n in groups], dtype=torch.float32)


def tap_offsets(theta: torch.Tensor, kernel_size: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """(dy, dx) integer offsets of each tap, each (C, K), computed in float32 like the
    reference kernels; sin/cos are evaluated in float64 and rounded once to float32, so
    the result does not depend on the device's float32 sin implementation."""
    theta = theta.detach().to('cpu', torch.float64)
    sin, cos = torch.sin(theta).float()[:, None], torch.cos(theta).float()[:, None]
    steps = (torch.arange(kernel_size, dtype=torch.float32) - kernel_size // 2)[None]
    return torch.trunc(-sin * steps).long(), torch.trunc(cos * steps).long()


@dataclass(frozen=True)
class GroupPlan:
    """One set of channels sharing tap offsets, as a dense conv in a sheared frame.

    In the working frame (H and W swapped when ``transposed``) tap k sits at row a_k and
    column b_k + shear * a_k of a (2 * half_h + 1) x (2 * half_w + 1) window;
    ``positions`` are the taps' flat indices in that window.
    """
    channels: Tuple[int, ...]
    transposed: bool
    shear: int
    half_h: int
    half_w: int
    positions: Tuple[int, ...]
    # Constants built from the fields above: the (K, window area) 0/1 matrix whose row k
    # is one at positions[k], and the one-hot centre of the window (for ``resid``).
    placement: torch.Tensor = field(init=False, compare=False, repr=False)
    centre: torch.Tensor = field(init=False, compare=False, repr=False)

    def __post_init__(self):
        height, width = self.window
        placement = torch.zeros(len(self.positions), height * width)
        placement[torch.arange(len(self.positions)), torch.tensor(self.positions)] = 1
        centre = torch.zeros(height * width)
        centre[self.half_h * width + self.half_w] = 1
        object.__setattr__(self, 'placement', placement)
        object.__setattr__(self, 'centre', centre)

    @property
    def window(self) -> Tuple[int, int]:
        return 2 * self.half_h + 1, 2 * self.half_w + 1

    def take(self, tensor: torch.Tensor, dim: int) -> torch.Tensor:
        """This group's channels of ``tensor`` along ``dim`` (a view when they are consecutive)."""
        first, count = self.channels[0], len(self.channels)
        if self.channels == tuple(range(first, first + count)):
            return tensor.narrow(dim, first, count)
        return tensor.index_select(dim, torch.tensor(self.channels, device=tensor.device))

    def kernel(self, taps: torch.Tensor, resid: bool) -> torch.Tensor:
        """The dense (channels, 1, h, w) kernel holding this group's taps (all channels' taps given).

        Taps that hit one pixel add up (the placement matmul); ``resid`` adds 1 at the
        centre tap.
        """
        window = self.take(taps, 0) @ self.placement.to(taps.device, taps.dtype)
        if resid:
            window = window + self.centre.to(window.device, window.dtype)
        return window.view(len(self.channels), 1, *self.window)


def _frame_cost(rows: List[int], cols: List[int], transposed: bool, shear: int):
    """Window area (the conv's cost); ties prefer tall windows (faster on CPU) and small shears."""
    half_h = max(abs(a) for a in rows)
    half_w = max(abs(b + shear * a) for a, b in zip(rows, cols))
    area = (2 * half_h + 1) * (2 * half_w + 1)
    return area, half_w > half_h, abs(shear), transposed


def plan_groups(theta: torch.Tensor, kernel_size: int) -> List[GroupPlan]:
    """Group channels by tap offsets and pick each group's cheapest sheared frame."""
    dy, dx = tap_offsets(theta, kernel_size)
    patterns: Dict[tuple, List[int]] = {}
    for c, key in enumerate(zip(map(tuple, dy.tolist()), map(tuple, dx.tolist()))):
        patterns.setdefault(key, []).append(c)
    plans = []
    for (ys, xs), channels in patterns.items():
        best = None
        for transposed in (False, True):
            rows, cols = (xs, ys) if transposed else (ys, xs)
            for shear in range(-MAX_SHEAR, MAX_SHEAR + 1):
                cost = _frame_cost(rows, cols, transposed, shear)
                if best is None or cost < best[0]:
                    best = (cost, transposed, shear, rows, cols)
        _, transposed, shear, rows, cols = best
        half_h = max(abs(a) for a in rows)
        half_w = max(abs(b + shear * a) for a, b in zip(rows, cols))
        width = 2 * half_w + 1
        positions = tuple((a + half_h) * width + b + shear * a + half_w for a, b in zip(rows, cols))
        plans.append(GroupPlan(tuple(channels), transposed, shear, half_h, half_w, positions))
    plans.sort(key=lambda plan: plan.channels[0])
    return plans


def _ceil_div(a, b):
    """ceil(a / b) for a >= 0, b > 0, without negative floor division: exported, an integer
    division of sizes becomes ONNX's Div, which truncates (-23 // 2 would give -11)."""
    return (a + b - 1) // b


def _shear_rows(x: torch.Tensor, shear: int, stride: int) -> Tuple[torch.Tensor, int]:
    """z[..., h, u] = x[..., h, u - shear * h - left] (zero elsewhere), as a view of one padded copy.

    Rows of a flat buffer re-read with a pitch of (padded width - shear) start ``shear``
    elements earlier each: the padding supplies the zeros. ``left`` is a multiple of the
    stride so that the sheared output grid lines up with the original one.
    """
    height, width = x.shape[-2:]
    if shear > 0:
        left, pitch = 0, width + shear * (height - 1)
        padded = F.pad(x, (0, shear * height))
    else:
        span = -shear
        left = _ceil_div(span * (height - 1), stride) * stride
        # Wide enough that the output row q + shear * p + left / stride stays inside (this
        # also makes it >= width + left + span). No max() or division by a size: under
        # export the sizes are symbols, and plain sums keep the traced shapes simple.
        pitch = stride * (_ceil_div(width, stride) + span) + left
        right = pitch - span - width - left
        # Reading row h runs ``span * (h + 1)`` elements into row h + 1's left padding;
        # ``span`` zero rows at the bottom cover the last row, as each padded row holds at
        # least left + 1 >= span * (height - 1) + 1 elements.
        padded = F.pad(x, (left, right, 0, span))
    flat = padded.flatten(-2)[..., :height * pitch]
    return flat.unflatten(-1, (height, pitch)), left


def _unshear_rows(y: torch.Tensor, shear: int, offset: int, width: int) -> torch.Tensor:
    """out[..., p, q] = y[..., p, q + shear * p + offset] for q < width."""
    rows, pitch = y.shape[-2:]
    flat = y.flatten(-2)
    if is_tracing():
        # The read runs offset + rows * shear past the end at most: pad that much for every
        # size, as a branch on a symbolic size would be frozen at the traced one.
        flat = F.pad(flat, (0, offset + rows * max(shear, 0)))
    else:
        needed = offset + rows * (pitch + shear) - flat.shape[-1]
        if needed > 0:
            flat = F.pad(flat, (0, needed))
    return flat[..., offset:offset + rows * (pitch + shear)].unflatten(-1, (rows, pitch + shear))[..., :width]


class _DepthwiseConvCPU(torch.autograd.Function):
    """F.conv2d (depthwise, no dilation) with a faster weight gradient on CPU.

    oneDNN's depthwise weight gradient is slow for windows wider than one column (50 ms
    for an 11x7 window where the forward takes 3 ms). The weight gradient is itself a
    convolution: dW[c] = sum_n x_pad[n, c] (*) dy[n, c] with stride -> dilation, which
    runs as an ordinary grouped conv with (channel, sample) pairs as groups.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding):
        ctx.save_for_backward(x, weight)
        ctx.has_bias, ctx.stride, ctx.padding = bias is not None, stride, padding
        return F.conv2d(x, weight, bias, stride, padding, 1, weight.shape[0])

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        stride, padding = ctx.stride, ctx.padding
        channels, _, kh, kw = weight.shape
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.ops.aten.convolution_backward(
                grad, x, weight, None, (stride, stride), padding, (1, 1), False, (0, 0), channels,
                (True, False, False))[0]
        if ctx.needs_input_grad[1]:
            batch, rows, cols = grad.shape[0], grad.shape[2], grad.shape[3]
            # The rows/cols of the padded input that any output reads: kh + stride * (rows - 1).
            need_h, need_w = kh + stride * (rows - 1), kw + stride * (cols - 1)
            x_pad = F.pad(x, (padding[1], need_w - x.shape[3] - padding[1],
                              padding[0], need_h - x.shape[2] - padding[0]))
            pairs = x_pad.transpose(0, 1).reshape(1, channels * batch, need_h, need_w)
            kernels = grad.transpose(0, 1).reshape(channels * batch, 1, rows, cols)
            grad_w = F.conv2d(pairs, kernels, None, 1, 0, stride, channels * batch)
            grad_w = grad_w.view(channels, batch, kh, kw).sum(1, keepdim=True)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad.sum((0, 2, 3))
        return grad_x, grad_w, grad_b, None, None


def _depthwise_conv(x, kernel, bias, stride, padding):
    # Not under autocast: the Function would save the fp32 input beside a bf16 gradient,
    # which the CPU backward refuses; autocast's own conv handles the casts.
    if x.device.type == 'cpu' and kernel.shape[-1] > 1 and torch.is_grad_enabled() and (
            x.requires_grad or kernel.requires_grad) and not torch.is_autocast_enabled('cpu'):
        return _DepthwiseConvCPU.apply(x, kernel, bias, stride, padding)
    return F.conv2d(x, kernel, bias, stride, padding, 1, kernel.shape[0])


def _group_conv(x: torch.Tensor, kernel: torch.Tensor, bias: Optional[torch.Tensor],
                plan: GroupPlan, stride: int) -> torch.Tensor:
    if plan.transposed:
        x = x.transpose(-1, -2)
    out_w = _ceil_div(x.shape[-1], stride)
    left = 0
    if plan.shear:
        x, left = _shear_rows(x, plan.shear, stride)
    y = _depthwise_conv(x, kernel, bias, stride, (plan.half_h, plan.half_w))
    if plan.shear:
        y = _unshear_rows(y, plan.shear, left // stride, out_w)
    return y.transpose(-1, -2) if plan.transposed else y


def oriented_conv1d(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
                    plans: List[GroupPlan], stride: int = 1, resid: bool = False) -> torch.Tensor:
    """The oriented depthwise conv of NCHW ``x`` (any memory format) given ``plan_groups``'s plans."""
    channels = weight.shape[0]
    taps = weight.reshape(channels, -1)
    outputs, order = [], []
    for plan in plans:
        group_bias = None if bias is None else plan.take(bias, 0)
        outputs.append(_group_conv(plan.take(x, 1), plan.kernel(taps, resid), group_bias, plan, stride))
        order.extend(plan.channels)
    out = torch.cat(outputs, 1) if len(outputs) > 1 else outputs[0]
    if order != list(range(channels)):
        out = out.index_select(1, torch.tensor(order, device=x.device).argsort())
    if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        out = out.contiguous(memory_format=torch.channels_last)
    return out


def prepare_plans(model: nn.Module) -> nn.Module:
    """Build every OrientedConv1d's plan from its current angles, e.g. before ``torch.export``
    (which runs the model on tensors without data); returns ``model``."""
    for module in model.modules():
        if isinstance(module, OrientedConv1d):
            module.plans()
    return model


class OrientedConv1d(nn.Module):
    """Depthwise oriented 1D conv, one angle per channel (see the module docstring).

    Args:
        channels: input = output channels (depthwise).
        kernel_size: K, odd.
        stride: the same in both directions.
        angle_offset: added to each channel's direction (in half turns) before the angles are
            assigned by :func:`oriented_angles`.
        resid: compute x + conv(x) by adding 1 to the centre tap (not stored in the weight).
        data_format: ``'channels_first'`` (N, C, H, W) or ``'channels_last'`` (N, H, W, C) input.

    ``theta`` is a float32 parameter of shape (C,) that is never trained (no gradient) and
    stays float32 under ``.half()`` / ``.to(torch.bfloat16)`` so the tap positions do not move.
    """

    def __init__(self, channels: int, kernel_size: int, stride: int = 1, bias: bool = True,
                 angle_offset: float = 0.0, directions: int = 8, resid: bool = False,
                 data_format: str = 'channels_first'):
        super().__init__()
        if kernel_size % 2 != 1 or kernel_size < 1:
            raise ValueError(f'OrientedConv1d needs an odd kernel_size, got {kernel_size}')
        if data_format not in ('channels_first', 'channels_last'):
            raise ValueError(f"data_format must be 'channels_first' or 'channels_last', got {data_format!r}")
        self.channels, self.kernel_size, self.stride = channels, kernel_size, stride
        self.resid, self.data_format = resid, data_format
        self.weight = nn.Parameter(torch.empty(channels, 1, 1, kernel_size))
        self.bias = nn.Parameter(torch.zeros(channels)) if bias else None
        self.theta = nn.Parameter(oriented_angles(channels, angle_offset, directions), requires_grad=False)
        nn.init.trunc_normal_(self.weight, std=0.02)
        self._plans_key, self._plans = None, None

    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)
        if self.theta.device.type != 'meta':
            self.plans()  # the loaded angles' plan, ready for tracing

    def _apply(self, fn, *args, **kwargs):
        # Moves follow the device; a dtype change must not round the angles.
        theta = self.theta.detach().clone()
        super()._apply(fn, *args, **kwargs)
        self.theta.data = theta.to(self.theta.device)
        return self

    def plans(self) -> List[GroupPlan]:
        """Channel groups for the current theta, recomputed when theta's version changes:
        load_state_dict and in-place writes such as ``conv.theta.fill_(a)`` are seen;
        writes through ``theta.data`` bypass the version counter and are not.

        While tracing, exporting or compiling, the plan of the last eager call (or of
        loading, or of :func:`prepare_plans`) is used as is: theta may then be a tensor
        without data.
        """
        if self._plans is not None and is_tracing():
            return self._plans
        key = (self.theta.data_ptr(), self.theta._version, self.kernel_size)
        if key != self._plans_key:
            self._plans, self._plans_key = plan_groups(self.theta, self.kernel_size), key
        return self._plans

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.data_format == 'channels_last':
            x = x.permute(0, 3, 1, 2)
        y = oriented_conv1d(x, self.weight, self.bias, self.plans(), self.stride, self.resid)
        return y.permute(0, 2, 3, 1) if self.data_format == 'channels_last' else y

    def extra_repr(self) -> str:
        return (f'{self.channels}, kernel_size={self.kernel_size}, stride={self.stride}, '
                f'resid={self.resid}, data_format={self.data_format}')
