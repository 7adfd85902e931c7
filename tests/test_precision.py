"""tools/train.py --amp / --amp-dtype: the optim wrapper they resolve to (the CUDA queries
mocked, so that this runs on CPU), and one error line where there is no GPU."""
import os
import subprocess
import sys

import pytest
import torch

from mm_efficient_backbones.backbones.errors import UserError
from mm_efficient_backbones.mm_common.precision import amp_optim_wrapper
from conftest import ROOT

# A config's optim wrapper as the ConvNeXt-1D configs write it: everything but the type stays.
CONFIG_WRAPPER = dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.05),
                      constructor='LearningRateDecayOptimizerConstructor',
                      paramwise_cfg=dict(decay_rate=0.9, decay_type='stage_wise', num_layers=6))
KEPT = {key: value for key, value in CONFIG_WRAPPER.items() if key != 'type'}


@pytest.fixture
def gpu(monkeypatch):
    """Pretend to have a CUDA GPU, with or without bfloat16."""
    def pretend(bf16: bool, name: str = 'NVIDIA Test GPU'):
        monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
        monkeypatch.setattr(torch.cuda, 'is_bf16_supported', lambda *args, **kwargs: bf16)
        monkeypatch.setattr(torch.cuda, 'get_device_name', lambda *args, **kwargs: name)
        monkeypatch.setattr(torch.cuda, 'device_count', lambda: 1)
    return pretend


def test_amp_is_bf16_where_the_gpu_supports_it(gpu):
    gpu(bf16=True)
    warnings = []
    wrapper = amp_optim_wrapper(CONFIG_WRAPPER, warn=warnings.append)
    assert wrapper == dict(KEPT, type='AmpOptimWrapper', dtype='bfloat16', loss_scale=1.0)
    assert not warnings
    assert CONFIG_WRAPPER['type'] == 'OptimWrapper'  # the config's own dict is left alone


def test_amp_falls_back_to_fp16_with_a_one_line_warning(gpu):
    gpu(bf16=False, name='Tesla V100')
    warnings = []
    wrapper = amp_optim_wrapper(CONFIG_WRAPPER, warn=warnings.append)
    assert wrapper == dict(KEPT, type='AmpOptimWrapper', dtype='float16', loss_scale='dynamic')
    assert len(warnings) == 1 and '\n' not in warnings[0]
    assert warnings[0].startswith('warning: --amp: Tesla V100 has no bfloat16 support, training in float16')


def test_amp_dtype_chooses(gpu):
    gpu(bf16=True)
    warnings = []
    wrapper = amp_optim_wrapper(dict(CONFIG_WRAPPER, loss_scale=512.0), 'fp16', warn=warnings.append)
    assert wrapper == dict(KEPT, type='AmpOptimWrapper', dtype='float16', loss_scale=512.0)
    assert not warnings  # asked for, so no warning
    assert amp_optim_wrapper(CONFIG_WRAPPER, 'bf16')['dtype'] == 'bfloat16'


def test_bf16_on_a_gpu_without_it_is_a_user_error(gpu):
    gpu(bf16=False, name='Tesla V100')
    with pytest.raises(UserError, match='^--amp-dtype bf16: Tesla V100 has no bfloat16 support; '
                                        'use --amp-dtype fp16$'):
        amp_optim_wrapper(CONFIG_WRAPPER, 'bf16')


def test_amp_without_a_gpu_is_a_user_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    with pytest.raises(UserError, match='^--amp needs a CUDA GPU'):
        amp_optim_wrapper(CONFIG_WRAPPER)


@pytest.mark.parametrize('bf16, dtype', [(True, torch.bfloat16), (False, torch.float16)])
def test_resolved_wrapper_builds_as_mmengine_amp(gpu, bf16, dtype):
    """mmengine builds the resolved dict: its autocast type and loss scaling are the intended."""
    from mmengine.optim import AmpOptimWrapper, build_optim_wrapper
    gpu(bf16=bf16)
    model = torch.nn.Linear(2, 2)
    wrapper = build_optim_wrapper(model, amp_optim_wrapper(
        dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-4)), warn=lambda message: None))
    assert isinstance(wrapper, AmpOptimWrapper) and wrapper.cast_dtype == dtype
    # bf16: a static scale of 1 (no scaling); fp16: dynamic.
    assert (wrapper._scale_update_param == 1.0) == bf16


@pytest.mark.skipif(torch.cuda.is_available(), reason='checks the machine without a GPU')
def test_train_amp_without_a_gpu_is_one_error_line():
    result = subprocess.run([sys.executable, 'tools/train.py', 'configs/demo/recnext_m0_demo_ade.py', '--amp'],
                            cwd=ROOT, env=dict(os.environ, OMP_NUM_THREADS='1'), capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1] == (
        "error: --amp needs a CUDA GPU (mmengine's AmpOptimWrapper runs on GPUs only); "
        'train without --amp on this machine')
    assert 'Traceback' not in result.stderr
