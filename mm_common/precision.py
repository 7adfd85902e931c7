"""The optim wrapper behind ``tools/train.py --amp [--amp-dtype {bf16,fp16}]``.

RecNeXt's authors list among its limitations that the recursive decomposition "may introduce
numerical instability during mixed precision training, which can be alleviated by using ...
BFloat16": ``--amp`` therefore means bfloat16 where the GPU has it, float16 (with a dynamic
loss scale) elsewhere, with a one-line warning. mmengine's AmpOptimWrapper runs on GPUs only;
without one, ``--amp`` is a one-line error instead of its AssertionError.
"""
from typing import Callable, Optional

import torch

from mm_efficient_backbones.backbones.errors import UserError

AMP_DTYPES = {'bf16': 'bfloat16', 'fp16': 'float16'}


def amp_optim_wrapper(optim_wrapper: dict, amp_dtype: Optional[str] = None,
                      warn: Callable[[str], None] = print) -> dict:
    """``optim_wrapper`` (a config's) as mmengine's AmpOptimWrapper in ``amp_dtype``: 'bf16',
    'fp16', or None for bf16 where ``torch.cuda.is_bf16_supported()`` and fp16 elsewhere
    (``warn`` says so). The optimizer, its constructor and paramwise settings are kept."""
    if amp_dtype not in (None, *AMP_DTYPES):
        raise UserError(f'--amp-dtype {amp_dtype}: choose one of {", ".join(AMP_DTYPES)}')
    if not torch.cuda.is_available():
        raise UserError('--amp needs a CUDA GPU (mmengine\'s AmpOptimWrapper runs on GPUs only); '
                        'train without --amp on this machine')
    bf16_supported = torch.cuda.is_bf16_supported()
    if amp_dtype == 'bf16' and not bf16_supported:
        raise UserError(f'--amp-dtype bf16: {torch.cuda.get_device_name()} has no bfloat16 support; '
                        'use --amp-dtype fp16')
    if amp_dtype is None:
        amp_dtype = 'bf16' if bf16_supported else 'fp16'
        if amp_dtype == 'fp16':
            warn(f'warning: --amp: {torch.cuda.get_device_name()} has no bfloat16 support, training in '
                 'float16 with a dynamic loss scale (bf16 is advised for RecNeXt; --amp-dtype fp16 '
                 'silences this)')
    wrapper = {key: value for key, value in dict(optim_wrapper).items() if key != 'loss_scale'}
    wrapper.update(type='AmpOptimWrapper', dtype=AMP_DTYPES[amp_dtype])
    # bfloat16 has float32's exponent range: its gradients need no scaling. A static scale of 1
    # keeps GradScaler's skipping of non-finite steps. float16 keeps the config's scale, if any.
    wrapper['loss_scale'] = 1.0 if amp_dtype == 'bf16' else optim_wrapper.get('loss_scale', 'dynamic')
    return wrapper
