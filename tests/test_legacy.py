"""mmdet 2.x / mmseg 0.x checkpoints (the authors' published detectors and segmentors) load
into our mmdet 3.3 / mmseg 1.2 models through tools/test.py, as files and as URLs, and
evaluate exactly like the same weights saved by mmengine."""
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import ROOT
from mm_efficient_backbones.mm_common.legacy import convert_legacy_checkpoint, legacy_origin
from test_hub import Server
from test_mm import DET_DEMO, SEG_DEMO, demo_options, run_tool

# What mmcv 1.x's runner wrote next to the weights (mmdet 2.28 / mmseg 0.30).
LEGACY_META = {
    'det': dict(mmdet_version='2.28.2', mmcv_version='1.7.1', config="model = dict(type='MaskRCNN')",
                env_info='sys.platform: linux', seed=0, exp_name='mask_rcnn_recnext_m3_fpn_1x_coco.py',
                epoch=12, iter=87960, time='Thu Mar  2 10:00:00 2023', hook_msgs=dict(last_ckpt='epoch_12.pth')),
    'seg': dict(mmseg_version='0.30.0', mmcv_version='1.7.1', config="model = dict(type='EncoderDecoder')",
                env_info='sys.platform: linux', seed=0, exp_name='fpn_recnext_m3_ade20k_40k.py',
                iter=80000, epoch=0, time='Fri Mar  3 10:00:00 2023', hook_msgs=dict(last_ckpt='iter_80000.pth')),
}
OPTIMIZER_1X = {'state': {}, 'param_groups': [{'lr': 2e-4, 'weight_decay': 0.05, 'params': [0, 1]}]}
CONFIGS = {'det': DET_DEMO, 'seg': SEG_DEMO}


def test_meta_is_mapped_and_reported():
    checkpoint = {'meta': dict(LEGACY_META['seg'], CLASSES=('a', 'b'), PALETTE=[[1, 2, 3], [4, 5, 6]]),
                  'state_dict': {'decode_head.conv_seg.weight': torch.zeros(2, 4, 1, 1)},
                  'optimizer': dict(OPTIMIZER_1X)}
    assert legacy_origin(checkpoint) == ('mmseg', '0.30.0')
    mapped = convert_legacy_checkpoint(checkpoint)
    assert mapped == ['mmseg 0.30.0 checkpoint', 'meta.CLASSES -> meta.dataset_meta.classes',
                      'meta.PALETTE -> meta.dataset_meta.palette', 'dropped optimizer (mmcv 1.x training state)',
                      'renamed 0 of 1 state_dict keys (the heads in our configs kept their mmseg 0.x names)']
    assert checkpoint['meta']['dataset_meta'] == {'classes': ('a', 'b'), 'palette': [[1, 2, 3], [4, 5, 6]]}
    assert 'optimizer' not in checkpoint and legacy_origin(checkpoint) is None
    assert convert_legacy_checkpoint(checkpoint) == []  # a 3.x checkpoint is left alone
    assert convert_legacy_checkpoint({'meta': {'mmdet_version': '3.3.0'}, 'state_dict': {}}) == []


def build_demo_weights(task: str):
    """Seeded weights of the demo model and its dataset meta (mmdet/mmseg registries)."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    cfg = Config.fromfile(str(ROOT / CONFIGS[task]))
    init_default_scope(cfg.default_scope)
    if task == 'det':
        from mm_efficient_backbones import detection  # noqa: F401
        from mmdet.registry import MODELS
    else:
        from mm_efficient_backbones import segmentation  # noqa: F401
        from mmseg.registry import MODELS
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    return model.state_dict(), dict(cfg.metainfo)


def same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if hasattr(a, 'shape'):  # numpy
        return (a == b).all()
    if hasattr(a, '__dict__'):  # e.g. mmdet's BitmapMasks, which has no __eq__
        return type(a) is type(b) and same(vars(a), vars(b))
    return a == b


def start_test(task, checkpoint, work, demo_data, env_extra=None) -> subprocess.Popen:
    """tools/test.py as users run it, dumping its predictions; started, not awaited.
    Its output goes to files (two pipes read one after the other could fill and block)."""
    env = dict(os.environ, OMP_NUM_THREADS='1', **(env_extra or {}))
    with open(f'{work}.out', 'w') as out, open(f'{work}.err', 'w') as err:
        return subprocess.Popen(
            [sys.executable, 'tools/test.py', CONFIGS[task], str(checkpoint), '--work-dir', str(work),
             '--out', str(work / 'predictions.pkl'),
             *demo_options(demo_data, task, 'test_dataloader.dataset.indices=4')],
            cwd=ROOT, env=env, stdout=out, stderr=err, text=True)


def finish_test(process: subprocess.Popen, work):
    """(metric line, predictions, log + stderr) of a tools/test.py run."""
    process.wait(timeout=600)
    stdout, stderr = Path(f'{work}.out').read_text(), Path(f'{work}.err').read_text()
    assert process.returncode == 0, stderr[-3000:]
    log = next(work.glob('*/*.log')).read_text()
    with open(work / 'predictions.pkl', 'rb') as f:
        predictions = pickle.load(f)
    return stdout.strip().splitlines()[-1], predictions, log + stderr


@pytest.mark.parametrize('task, via', [('det', 'path'), ('seg', 'url')])
def test_legacy_checkpoint_evaluates_like_its_3x_twin(task, via, demo_data, tmp_path):
    state_dict, metainfo = build_demo_weights(task)
    twin = tmp_path / 'mm3x.pth'
    torch.save({'meta': {'dataset_meta': metainfo, 'mmengine_version': '0.10.7', 'epoch': 12, 'iter': 1},
                'state_dict': state_dict}, twin)
    library = {'det': 'mmdet', 'seg': 'mmseg'}[task]
    legacy_meta = dict(LEGACY_META[task], CLASSES=tuple(metainfo['classes']))
    if 'palette' in metainfo:
        legacy_meta['PALETTE'] = [list(color) for color in metainfo['palette']]
    legacy = {'meta': legacy_meta, 'state_dict': state_dict, 'optimizer': OPTIMIZER_1X}
    legacy_path = tmp_path / f'recnext_m0_{task}_legacy.pth'
    torch.save(legacy, legacy_path)

    server, env = None, {'TORCH_HOME': str(tmp_path / 'torch')}
    if via == 'url':
        server = Server()
        server.files['/legacy.pth'] = legacy_path.read_bytes()
        location = f'{server.url}/legacy.pth'
    else:
        location = legacy_path
    # The two evaluations run side by side.
    legacy_run = start_test(task, location, tmp_path / 'legacy', demo_data, env)
    twin_run = start_test(task, twin, tmp_path / 'twin', demo_data)
    try:
        legacy_metric, legacy_predictions, legacy_log = finish_test(legacy_run, tmp_path / 'legacy')
        twin_metric, twin_predictions, twin_log = finish_test(twin_run, tmp_path / 'twin')
    finally:
        for process in (legacy_run, twin_run):
            if process.poll() is None:
                process.kill()
        if server:
            server.close()

    version = legacy_meta[f'{library}_version']
    assert f'legacy checkpoint: {library} {version} checkpoint; meta.CLASSES -> meta.dataset_meta.classes' in legacy_log
    assert 'dropped optimizer (mmcv 1.x training state)' in legacy_log
    for log in (legacy_log, twin_log):
        assert not re.search(r'missing keys|unexpected key|do not match exactly', log), log[-3000:]
    assert 'legacy checkpoint' not in twin_log
    assert legacy_metric == twin_metric
    assert same(legacy_predictions, twin_predictions)
    if via == 'url':
        # Cached under its name plus a hash of the whole URL (backbones.weights.hub.cached_path).
        assert list((tmp_path / 'torch' / 'hub' / 'checkpoints').glob('legacy.url*.pth'))


def test_load_from_takes_a_legacy_checkpoint_for_training(demo_data, tmp_path):
    state_dict, metainfo = build_demo_weights('seg')
    legacy = tmp_path / 'legacy.pth'
    torch.save({'meta': dict(LEGACY_META['seg'], CLASSES=tuple(metainfo['classes'])), 'state_dict': state_dict,
                'optimizer': OPTIMIZER_1X}, legacy)
    work = tmp_path / 'work'
    result = run_tool('tools/train.py', SEG_DEMO, '--work-dir', str(work), *demo_options(
        demo_data, 'seg', 'train_cfg.max_iters=1', 'train_cfg.val_interval=100', f'load_from={legacy}'))
    assert result.returncode == 0, result.stderr[-3000:]
    log = next(work.glob('*/*.log')).read_text()
    assert f'Load checkpoint from {legacy}' in log
    assert 'legacy checkpoint: mmseg 0.30.0 checkpoint; meta.CLASSES -> meta.dataset_meta.classes' in log
    assert not re.search(r'missing keys|unexpected key|do not match exactly', log + result.stderr)
