"""Every config against the published run it claims to reproduce.

tests/data/published_recipes/ holds the facts of each published run, each with its source
(extract.py regenerates them from the authors' logs and configs). Here every config is
resolved with mmengine (no model is built), translated into the same terms (mmdet 3.x /
mmseg 1.x -> the legacy facts: LinearLR -> warm-up ratio, PolyLR -> poly policy, the data
preprocessor -> img_norm_cfg, Resize + ResizeToMultiple -> AlignResize, tta_pipeline ->
MultiScaleFlipAug with img_ratios, the optim wrapper -> fp16 or not) and compared fact by fact.
A difference passes only where the run's file writes it down under ``deviations`` (our value
and why); every config is either tied to a run or listed in own_recipes.json with its reason.

Run as a script to check another checkout's configs, e.g. an older commit's::

    git archive main configs | tar -x -C /tmp/main && python tests/test_recipes.py --config-root /tmp/main
"""
import argparse
import functools
import importlib.util
import json
import sys
import warnings
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from unittest import mock

import pytest

from conftest import ROOT

RECIPES = ROOT / 'tests' / 'data' / 'published_recipes'
OWN_RECIPES = json.loads((RECIPES / 'own_recipes.json').read_text())
RUNS = {path.stem: json.loads(path.read_text()) for path in sorted(RECIPES.glob('*.json'))
        if path.name != 'own_recipes.json'}
# The README's command: tools/dist_train.sh CONFIG 8.
README_GPUS = 8
NOT_RECIPES = ('demo', 'deploy')  # CPU demos and mmdeploy's deploy configs
CONFIG_FILES = sorted(path.relative_to(ROOT).as_posix() for path in (ROOT / 'configs').rglob('*.py')
                      if path.relative_to(ROOT / 'configs').parts[0] not in NOT_RECIPES)
NEUTRAL_STEPS = {'LoadImageFromFile', 'LoadAnnotations', 'PackDetInputs', 'PackSegInputs'}
# Layer-wise lr decay constructors: mmdet 2.x / mmseg 0.x name (the authors') -> mmdet 3.x / mmseg 1.x.
LAYER_DECAY_CONSTRUCTORS = {'LearningRateDecayOptimizerConstructor': 'LearningRateDecayOptimizerConstructor'}
# How a TTA model merges its views, in the facts' words: mmseg 1.x's SegTTAModel averages the
# softmax probabilities of the views as mmseg 0.x's aug_test did (test_tta.py checks it).
TTA_MERGES = {'SegTTAModel': 'mean of softmax probabilities'}


def _extract_module():
    spec = importlib.util.spec_from_file_location('published_recipes_extract', RECIPES / 'extract.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


EXTRACT = _extract_module()
canonical_scale = EXTRACT.canonical_scale


@functools.lru_cache(maxsize=None)
def load(path: str):
    """``path`` resolved by mmengine. Resolving an ``mmdet::`` / ``mmseg::`` name reads the
    package's whole model index (0.3 s, then a ValueError for a base config): each name's
    outcome is remembered here, so that 34 configs resolve in seconds."""
    import mmengine.config.utils as config_utils
    from mmengine.config import Config
    with mock.patch.object(config_utils, '_get_cfg_metainfo', _remembered(config_utils._get_cfg_metainfo)):
        return Config.fromfile(path, import_custom_modules=False)


@functools.lru_cache(maxsize=None)
def _remembered(read):
    outcomes = {}

    def read_once(package_path: str, cfg_path: str):
        key = package_path, cfg_path
        if key not in outcomes:
            try:
                outcomes[key] = read(package_path, cfg_path), None
            except ValueError as err:
                outcomes[key] = None, err
        value, err = outcomes[key]
        if err is not None:
            raise err
        return value
    return read_once


def plain(value):
    """Config values in the facts' JSON terms (tuples become lists, ConfigDicts dicts)."""
    return json.loads(json.dumps(value, default=lambda o: o.to_dict() if hasattr(o, 'to_dict') else list(o)))


# ---- our configs, translated into the facts' terms -------------------------------------------
def train_steps(pipeline, task: str) -> list:
    """The augmentations of an mmdet 3.x / mmseg 1.x train pipeline as [op, params] pairs."""
    steps = []
    for step in pipeline:
        kind, params = step['type'], {k: v for k, v in step.items() if k != 'type'}
        if kind in NEUTRAL_STEPS:
            continue
        if kind == 'Resize' and 'scale' in step:
            steps.append(['resize', dict(scales=[canonical_scale(step['scale'], step.get('keep_ratio', False))],
                                         keep_ratio=step.get('keep_ratio', False))])
        elif kind == 'RandomResize':
            keep_ratio = step.get('keep_ratio', False)
            steps.append(['resize', dict(scale=canonical_scale(step['scale'], keep_ratio),
                                         ratio_range=list(step['ratio_range']), keep_ratio=keep_ratio)])
        elif kind == 'RandomChoiceResize':
            keep_ratio = step.get('keep_ratio', False)
            steps.append(['resize', dict(scales=sorted(canonical_scale(s, keep_ratio) for s in step['scales']),
                                         keep_ratio=keep_ratio)])
        elif kind == 'RandomCrop' and task == 'coco':
            steps.append(['crop', dict(size=list(step['crop_size']), type=step.get('crop_type', 'absolute'),
                                       allow_negative_crop=step.get('allow_negative_crop', False))])
        elif kind == 'RandomCrop':
            steps.append(['crop', dict(size=list(step['crop_size']), cat_max_ratio=step.get('cat_max_ratio', 1.0))])
        elif kind == 'RandomFlip':
            steps.append(['flip', step['prob']])
        elif kind == 'PhotoMetricDistortion':
            steps.append(['photometric_distortion', params])
        elif kind == 'RandomChoice':
            steps.append(['choice', [train_steps(option, task) for option in step['transforms']]])
        else:
            steps.append([kind, params])
    return plain(steps)


def single_scale_protocol(cfg, task: str) -> dict:
    """Scale, resizing, padding, flip and inference mode of the single-scale test."""
    steps = {step['type']: step for step in cfg.test_dataloader.dataset.pipeline}
    resize = steps['Resize']
    preprocessor = cfg.model.data_preprocessor
    if task == 'coco':
        mode, pad = None, preprocessor.get('pad_size_divisor') or None
    else:
        test_cfg = cfg.model.test_cfg
        mode = test_cfg.mode if test_cfg.mode != 'slide' else dict(
            slide=dict(crop=list(test_cfg.crop_size), stride=list(test_cfg.stride)))
        pad = (preprocessor.get('test_cfg') or {}).get('size_divisor')
    return plain(dict(scale=canonical_scale(resize['scale'], resize.get('keep_ratio', False)),
                      keep_ratio=resize.get('keep_ratio', False),
                      resize_to_multiple=steps['ResizeToMultiple']['size_divisor'] if 'ResizeToMultiple' in steps else None,
                      pad_to_multiple=pad, flip='RandomFlip' in steps, mode=mode))


def tta_protocol(cfg, test_scale) -> dict:
    """The config's multi-scale / flip protocol: image ratios of the test scale, flip, merge."""
    if not (cfg.get('tta_pipeline') and cfg.get('tta_model')):
        return None
    aug = next(step for step in cfg.tta_pipeline if step['type'] == 'TestTimeAug')
    ratios, flips, other = [], set(), []
    for group in aug['transforms']:
        for step in group:
            if step['type'] == 'Resize' and 'scale' in step and step.get('keep_ratio'):
                ratio = step['scale'][0] / test_scale[0]
                if canonical_scale(step['scale']) != [int(s * ratio) for s in canonical_scale(test_scale)]:
                    ratio = dict(scale=list(step['scale']))  # not a ratio of the test scale
                ratios.append(ratio)
            elif step['type'] == 'Resize':
                ratios.append(dict(resize={k: v for k, v in step.items() if k != 'type'}))
            elif step['type'] == 'RandomFlip':
                flips.add(step['prob'])
            elif step['type'] not in NEUTRAL_STEPS:
                other.append(step['type'])
    protocol = dict(ratios=ratios, flip=flips == {0.0, 1.0},
                    merge=TTA_MERGES.get(cfg.tta_model.type, cfg.tta_model.type))
    if other:
        protocol['other'] = other
    return plain(protocol)


def schedule_facts(cfg) -> dict:
    """schedule, lr_policy and warmup from train_cfg and param_scheduler."""
    by_epoch = cfg.train_cfg.get('type') == 'EpochBasedTrainLoop' or cfg.train_cfg.get('by_epoch', False)
    length = cfg.train_cfg.max_epochs if by_epoch else cfg.train_cfg.max_iters
    schedulers = cfg.param_scheduler if isinstance(cfg.param_scheduler, (list, tuple)) else [cfg.param_scheduler]
    warmup, policy = None, None
    for scheduler in schedulers:
        kind, begin, end = scheduler['type'], scheduler.get('begin', 0), scheduler.get('end')
        unusual = {}
        # mmengine's schedulers run over end - begin - 1 steps (they reach their last value at
        # step end - 1), mmcv 1.x's warm-up and poly over warmup_iters / max_iters steps.
        if kind == 'LinearLR':
            # mmcv 1.x linear warm-up from lr * warmup_ratio, per iteration, over warmup_iters.
            warmup = dict(type='linear', iters=end - begin - 1, ratio=scheduler.get('start_factor', 1 / 3))
            unusual = dict(begin=begin, end_factor=scheduler.get('end_factor', 1.0), by_epoch=scheduler.get('by_epoch', True))
            expected = dict(begin=0, end_factor=1.0, by_epoch=False)
            target = warmup
        elif kind == 'MultiStepLR':
            policy = dict(policy='step', steps=list(scheduler['milestones']), gamma=scheduler.get('gamma', 0.1))
            unusual = dict(begin=begin, covers_run=end is None or end >= length, by_epoch=scheduler.get('by_epoch', True))
            expected = dict(begin=0, covers_run=True, by_epoch=True)
            target = policy
        elif kind == 'PolyLR':
            # mmcv 1.x poly decays over the whole run; a LinearLR warm-up multiplies it (both chain).
            policy = dict(policy='poly', power=scheduler.get('power', 1.0), min_lr=scheduler.get('eta_min', 0.0))
            unusual = dict(begin=begin, end=end, by_epoch=scheduler.get('by_epoch', True))
            expected = dict(begin=0, end=length + 1, by_epoch=False)
            target = policy
        else:
            policy = dict(policy=kind, **{k: v for k, v in scheduler.items() if k != 'type'})
            continue
        target.update({k: v for k, v in unusual.items() if v != expected[k]})
    return dict(schedule=dict(unit='epoch' if by_epoch else 'iter', length=length),
                lr_policy=plain(policy), warmup=plain(warmup))


def precision_of(optim_wrapper) -> str:
    if optim_wrapper.type == 'OptimWrapper':
        return 'fp32'
    if optim_wrapper.type == 'AmpOptimWrapper':
        return 'bf16' if str(optim_wrapper.get('dtype')) in ('bfloat16', 'torch.bfloat16') else 'fp16'
    return optim_wrapper.type


def our_facts(cfg, task: str) -> dict:
    """The facts of ``cfg`` run as the README says, in the terms of the published runs' facts."""
    optimizer = cfg.optim_wrapper.optimizer
    constructor = cfg.optim_wrapper.get('constructor')
    paramwise = cfg.optim_wrapper.get('paramwise_cfg') or {}
    dataset = cfg.train_dataloader.dataset
    while 'pipeline' not in dataset and 'dataset' in dataset:
        dataset = dataset.dataset
    preprocessor = cfg.model.data_preprocessor
    evaluator = cfg.val_evaluator
    test = single_scale_protocol(cfg, task)
    return dict(
        gpus=README_GPUS,
        samples_per_gpu=cfg.train_dataloader.batch_size,
        total_batch=README_GPUS * cfg.train_dataloader.batch_size,
        optimizer=plain(dict(type=optimizer.type, lr=optimizer.lr,
                             betas=optimizer.get('betas', (0.9, 0.999)),
                             weight_decay=optimizer.get('weight_decay',
                                                        EXTRACT.TORCH_WEIGHT_DECAY.get(optimizer.type)))),
        layer_decay=plain(dict(constructor=constructor, **{k: paramwise.get(k) for k in
                                                           ('decay_rate', 'decay_type', 'num_layers')}))
        if constructor not in (None, 'DefaultOptimWrapperConstructor') else None,
        **schedule_facts(cfg),
        precision=precision_of(cfg.optim_wrapper),
        train_augmentation=train_steps(dataset.pipeline, task),
        test=test,
        tta=tta_protocol(cfg, test['scale']),
        normalization=plain(dict(mean=preprocessor.mean, std=preprocessor.std, rgb=preprocessor.bgr_to_rgb)),
        drop_path=cfg.model.backbone.get('drop_path_rate'),
        eval_metrics=plain(evaluator.get('metric') if task == 'coco' else evaluator.get('iou_metrics', ['mIoU'])),
    )


def published_fact(run: dict, name: str):
    """The run's fact in our terms: the authors' layer-decay constructor by its 1.x name."""
    value = run['facts'][name]['value']
    if name == 'layer_decay' and value:
        value = dict(value, constructor=LAYER_DECAY_CONSTRUCTORS.get(value['constructor'], value['constructor']))
    return value


def recipe_problems(run: dict, config_path: Path) -> list:
    """What differs between ``config_path`` and ``run`` without a written deviation, and every
    deviation note that no longer describes the config; empty when the config reproduces the run."""
    task = 'coco' if run['config'].endswith('_coco.py') else 'ade20k'
    ours = our_facts(load(str(config_path)), task)
    problems = []
    for name in run['facts']:
        published, mine = published_fact(run, name), ours[name]
        if name == 'tta' and published is None:
            continue  # single-scale published: the default test above is the protocol
        deviation = run.get('deviations', {}).get(name)
        if deviation is None:
            if mine != published:
                problems.append(f'{name}: ours {json.dumps(mine)}, published {json.dumps(published)} '
                                f'({run["facts"][name]["source"]})')
        elif mine == published:
            problems.append(f'{name}: matches the published run again; remove its deviation note')
        elif mine != deviation['ours'] or not deviation.get('reason'):
            problems.append(f'{name}: ours {json.dumps(mine)}, but the deviation note says '
                            f'{json.dumps(deviation["ours"])} ({deviation.get("reason") or "no reason given"})')
    return problems


# ---- the tests --------------------------------------------------------------------------------
def test_every_config_is_tied_to_a_published_run_or_is_our_own_recipe():
    tied = [run['config'] for run in RUNS.values()]
    assert len(tied) == len(set(tied)), 'two runs claim one config'
    assert not set(tied) & set(OWN_RECIPES), 'a config is both a published run and our own recipe'
    assert sorted(set(tied) | set(OWN_RECIPES)) == CONFIG_FILES
    assert all(reason.strip() for reason in OWN_RECIPES.values())
    # The published runs: 18 logged RecNeXt / RepNeXt runs and the 16 Oriented1D configs.
    assert len(RUNS) == 34


@pytest.mark.parametrize('stem', sorted(RUNS))
def test_config_reproduces_the_published_run(stem):
    run = RUNS[stem]
    problems = recipe_problems(run, ROOT / run['config'])
    assert not problems, f'{run["config"]} vs {run["run"]}:\n' + '\n'.join(problems)


def test_every_fact_names_its_source():
    for stem, run in RUNS.items():
        assert run['run'] and run['config'] == f'configs/{stem}.py'
        for name, fact in run['facts'].items():
            assert fact['source'].strip(), (stem, name)
        for name, deviation in run.get('deviations', {}).items():
            assert name in run['facts'] and deviation.get('reason', '').strip(), (stem, name)


def _percent(fraction: float) -> str:
    return str(Decimal(repr(round(fraction * 100, 6))).quantize(Decimal('0.1'), rounding=ROUND_HALF_UP))


@pytest.mark.parametrize('stem', sorted(stem for stem, run in RUNS.items() if 'evaluations' in run))
def test_published_figure_and_epoch_are_the_logged_ones(stem):
    """backbones/weights/zoo.py's figure is the log's evaluation at the zoo's epoch, or at the last one."""
    from mm_efficient_backbones.backbones.weights import zoo
    run = RUNS[stem]
    _, zoo_config = zoo.config(run['config'])
    columns, rows = run['evaluations']['columns'], run['evaluations']['rows']
    logged = {'box AP': 'bbox_mAP', 'mask AP': 'segm_mAP', 'mIoU': 'mIoU'}
    at = {row[0]: dict(zip(columns, row)) for row in rows}
    step = zoo_config.epoch or rows[-1][0]
    assert zoo_config.epoch != rows[-1][0], f'{stem}: the zoo names the last epoch; leave epoch unset'
    figures = {metric: _percent(at[step][logged[metric]]) for metric in zoo_config.published}
    assert figures == zoo_config.published, f'{stem}: the log has {figures} at {columns[0]} {step}'


def _slide_test(cfg):
    cfg.model.test_cfg = dict(mode='slide', crop_size=(512, 512), stride=(341, 341))


def _amp(cfg):
    cfg.optim_wrapper.type = 'AmpOptimWrapper'


def _batch_4(cfg):
    cfg.train_dataloader.batch_size = 4


def _weight_decay_005(cfg):
    cfg.optim_wrapper.optimizer.weight_decay = 0.05


def _warmup_1000(cfg):
    cfg.param_scheduler[0].end = 1000


def _warmup_from_0001(cfg):
    cfg.param_scheduler[0].start_factor = 0.001


def _mmseg_default_tta_scales(cfg):
    """mmseg 1.x's default: ratios of the image itself, not of (2048, 512)."""
    cfg.tta_pipeline[1].transforms[0] = [dict(type='Resize', scale_factor=r, keep_ratio=True)
                                         for r in (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)]


# The rows of issue #26 as main had them (and mmseg's default TTA scales): each must be caught.
ISSUE_ROWS = [
    ('repnext_m3_ade20k', _batch_4, 'total_batch'),
    ('convnext1d_tiny_1d_ade20k', _slide_test, 'test'),
    ('convnext1d_base_2dpp_ade20k', _amp, 'precision'),
    ('repnext_m5_coco', _weight_decay_005, 'optimizer'),
    ('convnext1d_tiny_2d_coco', _warmup_1000, 'warmup'),
    ('recnext_m3_coco', _warmup_from_0001, 'warmup'),
    ('convnext1d_base_1d_ade20k', _mmseg_default_tta_scales, 'tta'),
]


@pytest.mark.parametrize('stem, change, fact', ISSUE_ROWS, ids=[row[0] + '-' + row[2] for row in ISSUE_ROWS])
def test_the_issue_rows_are_caught(tmp_path, stem, change, fact):
    run = RUNS[stem]
    cfg = load(str(ROOT / run['config'])).copy()
    cfg = type(cfg).fromstring(cfg.pretty_text, '.py')  # a deep copy of the resolved config
    change(cfg)
    path = tmp_path / f'{stem}.py'
    cfg.dump(str(path))
    problems = recipe_problems(run, path)
    assert any(problem.startswith(f'{fact}:') for problem in problems), problems


def main(argv=None) -> int:
    warnings.filterwarnings('ignore', message='pkg_resources is deprecated as an API')
    parser = argparse.ArgumentParser(description='Check the configs of another checkout against the runs.')
    parser.add_argument('--config-root', type=Path, default=ROOT, help='the folder holding configs/')
    args = parser.parse_args(argv)
    failed = 0
    for stem, run in sorted(RUNS.items()):
        path = args.config_root / run['config']
        if not path.is_file():
            print(f'{run["config"]}: missing')
            failed += 1
            continue
        problems = recipe_problems(run, path)
        failed += bool(problems)
        print(f'{run["config"]}: ' + ('ok' if not problems else '\n    ' + '\n    '.join(problems)))
    print(f'{failed} of {len(RUNS)} configs differ from their published run')
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())


def mmcv1_lr(base_lr: float, step: int, length: int, warmup: dict, poly: dict) -> float:
    """mmcv 1.x's PolyLrUpdaterHook with a linear warm-up, by iteration: the poly lr of the whole
    run, multiplied during the warm-up by ratio + (1 - ratio) * step / iters."""
    lr = (base_lr - poly['min_lr']) * (1 - step / length) ** poly['power'] + poly['min_lr']
    if warmup and step < warmup['iters']:
        lr *= 1 - (1 - step / warmup['iters']) * (1 - warmup['ratio'])
    return lr


@pytest.mark.parametrize('power, min_lr, warmup_iters', [(1.0, 0.0, 15), (0.9, 1e-6, 0)])
def test_linear_warmup_and_poly_translate_mmcv_1x_exactly(power, min_lr, warmup_iters):
    """The translation the configs rely on: mmengine's LinearLR(end=warmup_iters + 1) and
    PolyLR(end=max_iters + 1), both from iteration 0, give mmcv 1.x's warm-up times the whole
    run's poly at every iteration (the ConvNeXt-1D UPerNet and the Semantic FPN schedules)."""
    import torch
    from mmengine.optim.scheduler import LinearLR, PolyLR
    length, poly = 200, dict(power=power, min_lr=min_lr)
    warmup = dict(iters=warmup_iters, ratio=1e-6) if warmup_iters else None
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1e-4)
    schedulers = [PolyLR(optimizer, power=power, eta_min=min_lr, by_epoch=False, begin=0, end=length + 1)]
    if warmup:
        schedulers.insert(0, LinearLR(optimizer, start_factor=warmup['ratio'], by_epoch=False, begin=0,
                                      end=warmup['iters'] + 1))
    for step in range(length):
        expected = mmcv1_lr(1e-4, step, length, warmup, poly)
        assert optimizer.param_groups[0]['lr'] == pytest.approx(expected, rel=1e-6, abs=1e-15), step
        optimizer.step()
        for scheduler in schedulers:
            scheduler.step()
