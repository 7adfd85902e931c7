"""mm_common.checkpoint_fit: a detector/segmentor checkpoint is checked against the config's
model before any work (readable, weights only, backbone family and arch, coverage, resume state)."""
import os

import pytest
import torch

from conftest import ROOT

pytest.importorskip('mmseg')

from mm_efficient_backbones.backbones import MM_BACKBONES  # noqa: E402
from mm_efficient_backbones.mm_common.checkpoint_fit import (CheckpointFitError, check_checkpoint_fits,  # noqa: E402
                                                             check_resume_checkpoint, find_resume_checkpoint,
                                                             resume_candidates)
from mm_efficient_backbones.mm_common.config import load_config  # noqa: E402

SEG_DEMO = 'configs/demo/recnext_m0_demo_ade.py'


def seg_config(**options):
    return load_config(str(ROOT / SEG_DEMO), [f'{k}={v}' for k, v in options.items()], work_dir='unused')


@pytest.fixture(scope='module')
def seg_state():
    """The seg demo model's state_dict, as tools/train.py saves it."""
    from mmengine.registry import init_default_scope
    from mm_efficient_backbones import segmentation  # noqa: F401
    from mmseg.registry import MODELS
    cfg = seg_config()
    init_default_scope('mmseg')
    torch.manual_seed(0)
    return MODELS.build(cfg.model).state_dict()


def save(path, state, **extra):
    torch.save(dict(state_dict=state, **extra), path)
    return str(path)


def test_the_models_own_checkpoint_fits(tmp_path, seg_state):
    fit = check_checkpoint_fits(seg_config(), save(tmp_path / 'own.pth', seg_state))
    assert fit.missing == {} and fit.unexpected == []
    assert set(fit.covered) == set(seg_state)


def test_another_family_is_refused_naming_both(tmp_path, seg_state):
    """The issue's case: a RepNeXt-M0 backbone under backbone. for a RecNeXt-M0 config."""
    repnext = {f'backbone.{k}': v for k, v in MM_BACKBONES['RepNeXt'](arch='m0').state_dict().items()}
    state = dict(seg_state, **repnext)
    for key in [k for k in state if k.startswith('backbone.') and k not in repnext]:
        del state[key]
    path = save(tmp_path / 'repnext.pth', state)
    with pytest.raises(CheckpointFitError) as err:
        check_checkpoint_fits(seg_config(), path)
    assert str(err.value).startswith(f'{path} holds a RepNeXt backbone but the config builds RecNeXt-m0; ')


def test_another_arch_is_refused_naming_both(tmp_path, seg_state):
    m1 = {f'backbone.{k}': v for k, v in MM_BACKBONES['RecNeXt'](arch='m1').state_dict().items()}
    state = {**{k: v for k, v in seg_state.items() if not k.startswith('backbone.')}, **m1}
    path = save(tmp_path / 'm1.pth', state)
    with pytest.raises(CheckpointFitError) as err:
        check_checkpoint_fits(seg_config(), path)
    assert str(err.value) == (f'{path} holds a RecNeXt-m1 backbone but the config builds RecNeXt-m0; '
                              'pass a RecNeXt-m0 checkpoint, or set model.backbone.arch=m1')


@pytest.mark.parametrize('content, message', [
    (b'this is text, not weights\n', 'is not a torch checkpoint (neither a torch.save zip nor a pickle)'),
    (None, 'is a damaged torch checkpoint (cut short? its zip archive is incomplete); use another checkpoint'),
])
def test_unreadable_file_is_one_line(tmp_path, seg_state, content, message):
    path = tmp_path / 'bad.pth'
    if content is None:  # the first half of a real checkpoint: an interrupted copy, a full disk
        save(tmp_path / 'full.pth', seg_state)
        data = (tmp_path / 'full.pth').read_bytes()
        content = data[:len(data) // 2]
    path.write_bytes(content)
    with pytest.raises(CheckpointFitError) as err:
        check_checkpoint_fits(seg_config(), str(path))
    assert str(err.value) == f'{path} {message}'


class Arbitrary:
    """Not allowlisted: unpickling it would need weights_only=False."""


def test_arbitrary_objects_are_refused_by_the_weights_only_policy(tmp_path, seg_state):
    path = save(tmp_path / 'pickled.pth', seg_state, extra=Arbitrary())
    with pytest.raises(CheckpointFitError) as err:
        check_checkpoint_fits(seg_config(), path)
    assert 'needs unpickling of arbitrary objects (test_checkpoint_fit.Arbitrary)' in str(err.value)
    assert '\n' not in str(err.value)


def test_partial_coverage_lists_the_missing_parts(tmp_path, seg_state):
    backbone_only = {k: v for k, v in seg_state.items() if k.startswith('backbone.')}
    path = save(tmp_path / 'backbone_only.pth', backbone_only)
    with pytest.raises(CheckpointFitError) as err:
        check_checkpoint_fits(seg_config(), path)
    tensors = {part: sum(k.startswith(part + '.') and not k.endswith('num_batches_tracked') for k in seg_state)
               for part in ('neck', 'decode_head')}
    assert str(err.value) == (
        f'{path} does not cover the model: missing or of another shape: neck ({tensors["neck"]} of '
        f'{tensors["neck"]} tensors), decode_head ({tensors["decode_head"]} of {tensors["decode_head"]} '
        'tensors); pass --allow-partial to load it anyway, or name the parts the file need not cover '
        "in the config's checkpoint_new_parts")
    fit = check_checkpoint_fits(seg_config(), path, allow_partial=True)
    assert set(fit.missing) == {'neck', 'decode_head'}


def test_parts_the_config_calls_new_may_be_missing_or_reshaped(tmp_path, seg_state):
    state = {k: v for k, v in seg_state.items() if not k.startswith('decode_head.conv_seg')}
    state['decode_head.conv_seg.weight'] = torch.zeros(9, 64, 1, 1)  # fine-tuned for other classes
    path = save(tmp_path / 'new_head.pth', state)
    with pytest.raises(CheckpointFitError, match=r'decode_head \(2 of \d+ tensors\)'):
        check_checkpoint_fits(seg_config(), path)
    fit = check_checkpoint_fits(seg_config(checkpoint_new_parts="['decode_head.conv_seg']"), path)
    assert fit.missing == {} and fit.new == {'decode_head': ['decode_head.conv_seg.weight',
                                                             'decode_head.conv_seg.bias']}


def test_legacy_mmseg_0x_file_passes_when_its_mapped_keys_fit(tmp_path, seg_state):
    meta = dict(mmseg_version='0.30.0', CLASSES=('background', 'square', 'disc', 'triangle'))
    path = save(tmp_path / 'legacy.pth', seg_state, meta=meta, optimizer={'state': {}})
    fit = check_checkpoint_fits(seg_config(), path)
    assert fit.missing == {} and fit.checkpoint['meta']['dataset_meta']['classes'][1] == 'square'
    partial = save(tmp_path / 'legacy_partial.pth',
                   {k: v for k, v in seg_state.items() if not k.startswith('neck.')}, meta=meta)
    with pytest.raises(CheckpointFitError, match=r'missing or of another shape: neck '):
        check_checkpoint_fits(seg_config(), partial)


def test_resume_needs_mmengine_training_state(tmp_path, seg_state):
    foreign = save(tmp_path / 'foreign.pth', seg_state)
    with pytest.raises(CheckpointFitError) as err:
        check_resume_checkpoint(seg_config(), foreign)
    assert str(err.value) == (f'{foreign} holds no mmengine training state (meta with epoch and iter), so '
                              f'training cannot resume from it; to start from its weights pass '
                              f'--cfg-options load_from={foreign}')
    own = save(tmp_path / 'iter_2.pth', seg_state, meta=dict(epoch=0, iter=2))
    assert check_resume_checkpoint(seg_config(), own).checkpoint['meta']['iter'] == 2


def test_resume_passes_over_unreadable_checkpoints_to_the_newest_readable(tmp_path, seg_state):
    work = tmp_path / 'work'
    work.mkdir()
    for step in (2, 4):
        save(work / f'iter_{step}.pth', seg_state, meta=dict(epoch=0, iter=step))
    data = (work / 'iter_4.pth').read_bytes()
    (work / 'iter_6.pth').write_bytes(data[:len(data) // 3])  # cut short
    (work / 'last_checkpoint').write_text(str(work / 'iter_6.pth'))
    (work / 'best_mIoU_iter_4.pth').write_bytes(data)  # not a step checkpoint: never resumed
    assert resume_candidates(str(work)) == [str(work / f'iter_{n}.pth') for n in (6, 4, 2)]
    warnings = []
    assert find_resume_checkpoint(seg_config(), str(work), warn=warnings.append) == str(work / 'iter_4.pth')
    assert warnings == [f'warning: passing over a checkpoint that cannot be resumed: {work}/iter_6.pth is a '
                        'damaged torch checkpoint (cut short? its zip archive is incomplete); use another checkpoint']

    for step in (2, 4):
        (work / f'iter_{step}.pth').write_text('damaged')
    warnings.clear()
    with pytest.raises(CheckpointFitError) as err:
        find_resume_checkpoint(seg_config(), str(work), warn=warnings.append)
    assert len(warnings) == 3
    assert str(err.value) == (f'no checkpoint in {work} can be resumed (3 passed over, see the warnings above); '
                              'drop --resume to train from scratch, or pass --resume PATH')

    empty = tmp_path / 'empty'
    empty.mkdir()
    assert find_resume_checkpoint(seg_config(), str(empty), warn=warnings.append) is None
    assert not os.listdir(empty)
