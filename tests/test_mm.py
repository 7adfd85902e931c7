"""mmdet/mmseg integration: configs build, demo training and testing, distributed CPU
training, resume, and one-line errors for bad input."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import ROOT

# Model configs; configs/deploy/ holds mmdeploy's deploy configs, which build no model.
CONFIGS = sorted(str(p.relative_to(ROOT)) for p in (ROOT / 'configs').rglob('*.py')
                 if p.parent.name != 'deploy')
DET_DEMO = 'configs/demo/recnext_m0_demo_coco.py'
SEG_DEMO = 'configs/demo/recnext_m0_demo_ade.py'


def run_tool(*args, timeout=900, env_extra=None):
    """Run a tools/ entry point as users do, from the repo root."""
    env = dict(os.environ, OMP_NUM_THREADS='1', **(env_extra or {}))
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def demo_options(demo_data, task, *extra):
    if task == 'det':
        root = f'{demo_data}/coco/'
        return ['--cfg-options', f'train_dataloader.dataset.data_root={root}',
                f'val_dataloader.dataset.data_root={root}', f'test_dataloader.dataset.data_root={root}',
                f'val_evaluator.ann_file={root}annotations/instances_val2017.json',
                f'test_evaluator.ann_file={root}annotations/instances_val2017.json',
                'train_dataloader.num_workers=0', 'val_dataloader.num_workers=0',
                'test_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
                'val_dataloader.persistent_workers=False', 'test_dataloader.persistent_workers=False',
                *extra]
    root = f'{demo_data}/ade'
    return ['--cfg-options', f'train_dataloader.dataset.data_root={root}',
            f'val_dataloader.dataset.data_root={root}', f'test_dataloader.dataset.data_root={root}',
            'train_dataloader.num_workers=0', 'val_dataloader.num_workers=0',
            'test_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
            'val_dataloader.persistent_workers=False', 'test_dataloader.persistent_workers=False',
            *extra]


def scalars(work_dir: Path):
    """Records of the newest run's mmengine json log."""
    logs = sorted(work_dir.glob('*/vis_data/scalars.json'))
    assert logs, f'no scalars.json under {work_dir}'
    return [json.loads(line) for line in logs[-1].read_text().splitlines() if line.strip()]


@pytest.mark.parametrize('config', CONFIGS)
def test_config_loads_and_builds(config):
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    cfg = Config.fromfile(str(ROOT / config))
    init_default_scope(cfg.default_scope)
    if cfg.default_scope == 'mmdet':
        from mm_efficient_backbones import detection  # noqa: F401
        from mmdet.registry import MODELS
    else:
        from mm_efficient_backbones import segmentation  # noqa: F401
        from mmseg.registry import MODELS
    cfg.model.backbone.init_cfg = None  # the released weights are not downloaded in tests
    from mm_efficient_backbones import backbones
    # ConvNeXt-B detectors are ~150M parameters: their structure is checked on the meta device only.
    on_meta = cfg.model.backbone.get('arch') == 'base'
    with torch.device('meta' if on_meta else 'cpu'):
        model = MODELS.build(cfg.model)
    assert type(model.backbone) is backbones.MM_BACKBONES[cfg.model.backbone.type]
    assert model.backbone.arch == cfg.model.backbone.arch
    neck_in = cfg.model.get('neck', {}).get('in_channels') or cfg.model.decode_head.in_channels
    assert list(neck_in) == model.backbone.out_channels
    if on_meta:
        return
    # One forward pass through backbone and neck (an odd size: every family takes any input).
    model.eval()
    with torch.no_grad():
        features = model.extract_feat(torch.randn(1, 3, 67, 91))
    assert features and all(torch.isfinite(f).all() for f in features)


# task -> (config, options for one training iteration, checkpoint, val metric, test output)
ONE_ITERATION = {
    'det': (DET_DEMO, ['train_dataloader.dataset.indices=4', 'train_cfg.max_epochs=1'],
            'epoch_1.pth', 'coco/bbox_mAP', ['coco/bbox_mAP=', 'coco/segm_mAP=']),
    'seg': (SEG_DEMO, ['train_cfg.max_iters=1', 'default_hooks.logger.interval=1'],
            'iter_1.pth', 'mIoU', ['mIoU=']),
}


@pytest.mark.parametrize('task', ONE_ITERATION)
def test_demo_train_iteration_and_test_pass(demo_data, tmp_path, task):
    """One training iteration (batch 4), a val pass and a test pass with the real metric."""
    config, train_options, checkpoint, metric, test_output = ONE_ITERATION[task]
    work = tmp_path / task
    result = run_tool('tools/train.py', config, '--work-dir', str(work), *demo_options(
        demo_data, task, *train_options, 'val_dataloader.dataset.indices=4',
        'train_cfg.val_interval=1', 'default_hooks.checkpoint.interval=1'))
    assert result.returncode == 0, result.stderr[-3000:]
    records = scalars(work)
    assert any('loss' in r and r.get('iter') == 1 for r in records)
    assert any(metric in r for r in records)
    result = run_tool('tools/test.py', config, str(work / checkpoint), '--work-dir', str(work),
                      *demo_options(demo_data, task, 'test_dataloader.dataset.indices=4'))
    assert result.returncode == 0, result.stderr[-3000:]
    assert all(text in result.stdout for text in test_output), result.stdout


def test_dist_train_two_gloo_processes_then_resume(demo_data, tmp_path):
    """dist_train.sh with 2 CPU processes (gloo, SyncBN -> BN), then --resume."""
    work = tmp_path / 'dist'
    common = ['val_dataloader.dataset.indices=4', 'train_cfg.val_interval=100',
              'default_hooks.checkpoint.interval=2', 'default_hooks.logger.interval=1']
    env = dict(os.environ, OMP_NUM_THREADS='1', PORT=str(29500 + os.getpid() % 1000))
    result = subprocess.run(
        ['bash', 'tools/dist_train.sh', SEG_DEMO, '2', '--work-dir', str(work),
         *demo_options(demo_data, 'seg', 'train_cfg.max_iters=2', *common)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    log = next(work.glob('*/*.log')).read_text()
    assert 'launch: distributed on CPU with gloo (rank 0/2)' in log
    assert "type='SyncBN'" not in log  # mmseg's SyncBN heads ran as BN on CPU
    assert (work / 'iter_2.pth').is_file()

    # Resume the 2-iteration run to 4 iterations in one process.
    result = run_tool('tools/train.py', SEG_DEMO, '--work-dir', str(work), '--resume',
                      *demo_options(demo_data, 'seg', 'train_cfg.max_iters=4', *common))
    assert result.returncode == 0, result.stderr[-3000:]
    log = sorted(work.glob('*/*.log'))[-1].read_text()
    assert 'resumed epoch: 0, iter: 2' in log
    iters = [r['iter'] for r in scalars(work) if 'loss' in r]
    assert iters == [3, 4]

    # And evaluate it with dist_test.sh on 2 CPU processes.
    result = subprocess.run(
        ['bash', 'tools/dist_test.sh', SEG_DEMO, str(work / 'iter_4.pth'), '2', '--work-dir', str(work),
         *demo_options(demo_data, 'seg', 'test_dataloader.dataset.indices=4')],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert 'mIoU=' in result.stdout


@pytest.mark.parametrize('options, message', [
    (['model.backbone.arch=m9'],
     "error: unknown RecNeXt arch 'm9': choose one of m0, m1, m2, m3, m4, m5, a0, a1, a2, a3, a4, a5"),
    (['model.backbone.init_cfg.type=Pretrained'],
     'error: invalid config option: init_cfg={\'type\': \'Pretrained\'} in child config cannot inherit from '
     'base because init_cfg is a dict in the child config but is of type <class \'NoneType\'> in base config. '
     'You may set `_delete_=True` to ignore the base config.'),
    (['train_dataloader.dataset.data_root=/no/such/dir'], 'error: train data root not found: /no/such/dir (see README "Training on COCO and ADE20K" '
     'for the layout, or pass --cfg-options train_dataloader.dataset.data_root=PATH)'),
])
def test_bad_input_is_one_line(demo_data, tmp_path, options, message):
    # Later --cfg-options entries override earlier ones.
    result = run_tool('tools/train.py', SEG_DEMO, '--work-dir', str(tmp_path),
                      *demo_options(demo_data, 'seg', 'train_cfg.max_iters=1', *options))
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1] == message
    assert 'Traceback' not in result.stderr


def test_missing_config_is_one_line():
    result = run_tool('tools/train.py', 'configs/nope.py')
    assert result.returncode == 2 and result.stderr.strip() == 'error: config not found: configs/nope.py'


def pretrained_config(tmp_path, checkpoint) -> str:
    """A user config: the seg demo with a pretrained backbone checkpoint."""
    path = tmp_path / 'pretrained_demo.py'
    path.write_text(f"_base_ = '{ROOT / SEG_DEMO}'\n"
                    f"model = dict(backbone=dict(init_cfg=dict(_delete_=True, type='Pretrained', "
                    f"checkpoint='{checkpoint}')))\n")
    return str(path)


def test_missing_pretrained_checkpoint_is_one_line(demo_data, tmp_path):
    result = run_tool('tools/train.py', pretrained_config(tmp_path, '/no/such.pth'), '--work-dir',
                      str(tmp_path / 'work'), *demo_options(demo_data, 'seg', 'train_cfg.max_iters=1'))
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1] == (
        'error: checkpoint not found: /no/such.pth (convert a released classifier with '
        'convert_to_backbone_weights, see the README)')


def test_checkpoint_with_no_matching_keys_is_one_line(demo_data, tmp_path):
    bogus = tmp_path / 'bogus.pth'
    torch.save({'state_dict': {'features.0.weight': torch.zeros(1)}}, bogus)
    result = run_tool('tools/train.py', pretrained_config(tmp_path, bogus), '--work-dir',
                      str(tmp_path / 'work'), *demo_options(demo_data, 'seg', 'train_cfg.max_iters=1'))
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1] == (
        f'error: {bogus}: no keys match RecNeXt-m0; pass a RecNeXt classifier or backbone checkpoint')


def test_pretrained_classifier_release_loads_and_is_logged(demo_data, tmp_path):
    """init_cfg takes a raw {'model': ...} release; the report lands in the run's log."""
    import timm
    from mm_efficient_backbones import backbones  # noqa: F401
    release = tmp_path / 'recnext_m0_release.pth'
    torch.save({'model': timm.create_model('recnext_m0').state_dict()}, release)
    result = run_tool('tools/train.py', pretrained_config(tmp_path, release), '--work-dir',
                      str(tmp_path / 'work'), *demo_options(demo_data, 'seg', 'train_cfg.max_iters=1',
                                                            'train_cfg.val_interval=100'))
    assert result.returncode == 0, result.stderr[-3000:]
    log = next((tmp_path / 'work').glob('*/*.log')).read_text()
    assert f'RecNeXt-m0: loaded 368 tensors from {release} [model]; dropped classifier keys: 14' in log
