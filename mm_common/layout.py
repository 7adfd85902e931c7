"""mmcv ops that read their inputs' raw memory as NCHW get contiguous inputs.

mmcv's RoIAlign (and its other RoI, deformable and CARAFE kernels, on CPU and CUDA alike)
index ``input.data_ptr()`` as if the tensor were contiguous NCHW. A channels-last tensor has
the same shape but another memory order, so the op reads scrambled features without an
error: mmcv issue #2203 (open; RoIAlign stopped raising on such input in mmcv 1.3.16).
Our backbones return contiguous NCHW, but a user's neck, a plugin or ``torch.compile`` may
hand these ops channels-last tensors, so every op below makes its tensor arguments
contiguous first. A contiguous tensor is passed through unchanged (no copy).

:func:`make_mmcv_ops_layout_safe` patches the ops' autograd Functions in place, once;
the mm glue calls it when it registers the backbones.
"""
import functools
import importlib
from typing import List, Tuple

import torch

# (mmcv.ops module, autograd Function) whose forward hands tensors to a raw-memory kernel.
RAW_MEMORY_OPS: Tuple[Tuple[str, str], ...] = (
    ('mmcv.ops.roi_align', 'RoIAlignFunction'),
    ('mmcv.ops.roi_pool', 'RoIPoolFunction'),
    ('mmcv.ops.roi_align_rotated', 'RoIAlignRotatedFunction'),
    ('mmcv.ops.deform_conv', 'DeformConv2dFunction'),
    ('mmcv.ops.modulated_deform_conv', 'ModulatedDeformConv2dFunction'),
    ('mmcv.ops.deform_roi_pool', 'DeformRoIPoolFunction'),
    ('mmcv.ops.carafe', 'CARAFEFunction'),
    ('mmcv.ops.carafe', 'CARAFENaiveFunction'),
    ('mmcv.ops.masked_conv', 'MaskedConv2dFunction'),
    ('mmcv.ops.psa_mask', 'PSAMaskFunction'),
)

_PATCHED = '_layout_safe'


def _contiguous(value):
    return value.contiguous() if isinstance(value, torch.Tensor) else value


def _layout_safe_forward(forward):
    @functools.wraps(forward)
    def wrapper(ctx, *args, **kwargs):
        return forward(ctx, *map(_contiguous, args),
                       **{key: _contiguous(value) for key, value in kwargs.items()})
    setattr(wrapper, _PATCHED, True)
    return wrapper


def make_mmcv_ops_layout_safe() -> List[str]:
    """Patch every op of :data:`RAW_MEMORY_OPS` this mmcv build has (idempotent).

    Returns the names of the ops that are layout-safe afterwards.
    """
    safe = []
    for module_name, function_name in RAW_MEMORY_OPS:
        try:
            module = importlib.import_module(module_name)
        except ImportError:  # an mmcv build without this op
            continue
        function = getattr(module, function_name, None)
        if function is None:
            continue
        if not getattr(function.forward, _PATCHED, False):
            # Function.apply looks forward up on the class at each call, so the module-level
            # aliases (``roi_align = RoIAlignFunction.apply``) see the patch too.
            function.forward = staticmethod(_layout_safe_forward(function.forward))
        safe.append(function_name)
    return safe
