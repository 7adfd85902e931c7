"""Run-time fixes that mmengine 0.10.7 needs on this stack, used by tools/train.py and
tools/test.py. Each one is narrow and says why it exists."""
import os
import re
import shutil
import subprocess
from typing import Iterable

import torch
import torch.distributed as torch_dist
from mmengine.model import convert_sync_batchnorm as _mmengine_convert_sync_batchnorm

# Re-exported for the mm tools: one user-error class and one exit path for every tool.
from mm_efficient_backbones.backbones.errors import UserError, exit_code_of, one_line  # noqa: F401
from mm_efficient_backbones.backbones.weights.hub import MISSING_PRETRAINED_HINT, download

from .safe_load import allow_mmengine_checkpoints


def _replace_norm(cfg, old: str, new: str) -> int:
    """Replace ``type=old`` by ``type=new`` in every norm_cfg of a (nested) config."""
    count = 0
    if isinstance(cfg, dict):
        for key, value in cfg.items():
            if key.endswith('norm_cfg') and isinstance(value, dict) and value.get('type') == old:
                value['type'] = new
                count += 1
            else:
                count += _replace_norm(value, old, new)
    elif isinstance(cfg, (list, tuple)):
        count += sum(_replace_norm(item, old, new) for item in cfg)
    return count


def configure_launch(cfg, launcher: str) -> str:
    """Make one config run as a single process, on N GPUs, or on N CPU processes.

    * GPUs (distributed): every BN becomes SyncBN (``cfg.sync_bn='torch'``).
    * CPUs (distributed, e.g. ``dist_train.sh CONFIG 2`` here, or a slurm step): torch's
      SyncBN has no CPU kernel, so SyncBN becomes BN; the process group is created here
      with gloo, because mmengine's launchers call ``torch.cuda.set_device``; and
      DDP gets ``device_ids=None`` as CPU modules require.
    * Single process: mmengine already reverts SyncBN to BN.
    Returns a short description for the log.
    """
    cfg.launcher = launcher
    if launcher == 'none':
        return 'single process'
    if torch.cuda.is_available():
        cfg.setdefault('sync_bn', 'torch')
        keep_norm_activations_in_sync_bn()
        return f'distributed on GPUs (sync_bn={cfg.sync_bn})'
    _replace_norm(cfg._cfg_dict if hasattr(cfg, '_cfg_dict') else cfg, 'SyncBN', 'BN')
    cfg.pop('sync_bn', None)
    env_cfg = cfg.setdefault('env_cfg', {})
    dist_cfg = env_cfg.setdefault('dist_cfg', {})
    dist_cfg['backend'] = 'gloo'
    if launcher == 'slurm':
        _slurm_to_torch_env()
    elif launcher != 'pytorch':
        raise UserError(f'launcher {launcher!r} needs GPUs here; on CPU use --launcher pytorch '
                        '(tools/dist_train.sh does) or slurm')
    if not torch_dist.is_initialized():
        torch_dist.init_process_group(backend='gloo')
    wrapper = cfg.get('model_wrapper_cfg') or dict(type='MMDistributedDataParallel')
    wrapper.setdefault('device_ids', None)
    wrapper.setdefault('broadcast_buffers', False)
    wrapper.setdefault('find_unused_parameters', cfg.get('find_unused_parameters', False))
    cfg.model_wrapper_cfg = wrapper
    return f'distributed on CPU with gloo (rank {os.environ.get("RANK")}/{os.environ.get("WORLD_SIZE")})'


def sync_batchnorm_keeping_activations(module: torch.nn.Module, implementation: str = 'torch'):
    """mmengine's SyncBN conversion, except that norm layers with a built-in activation stay whole.

    mmengine rebuilds every ``_BatchNorm`` as a bare SyncBatchNorm, which silently drops the
    activation that timm's ``BatchNormAct2d`` applies (ReXNet's blocks use it). timm's own
    conversion turns those into ``SyncBatchNormAct`` and every other BN into torch's SyncBN.
    """
    if implementation != 'torch':
        return _mmengine_convert_sync_batchnorm(module, implementation)
    from timm.layers import convert_sync_batchnorm
    return convert_sync_batchnorm(module)


def keep_norm_activations_in_sync_bn() -> None:
    """Make mmengine's runner convert BN to SyncBN with :func:`sync_batchnorm_keeping_activations`."""
    import mmengine.runner.runner as runner_module
    runner_module.convert_sync_batchnorm = sync_batchnorm_keeping_activations


def _slurm_to_torch_env() -> None:
    """What mmengine's slurm launcher derives from SLURM_*, for a CPU process group (its
    own launcher calls torch.cuda.set_device)."""
    try:
        rank, world = int(os.environ['SLURM_PROCID']), int(os.environ['SLURM_NTASKS'])
    except (KeyError, ValueError):
        raise UserError('--launcher slurm outside a slurm job step (no SLURM_PROCID/SLURM_NTASKS); '
                        'start it with tools/slurm_train.sh or srun') from None
    os.environ.setdefault('RANK', str(rank))
    os.environ.setdefault('WORLD_SIZE', str(world))
    os.environ.setdefault('LOCAL_RANK', os.environ.get('SLURM_LOCALID', '0'))
    if 'MASTER_ADDR' not in os.environ:
        nodes = os.environ.get('SLURM_NODELIST', '127.0.0.1')
        first = subprocess.run(['scontrol', 'show', 'hostname', nodes], capture_output=True, text=True) \
            if shutil.which('scontrol') else None
        os.environ['MASTER_ADDR'] = first.stdout.split()[0] if first and first.stdout.split() else '127.0.0.1'
    os.environ.setdefault('MASTER_PORT', '29500')


# ---- checkpoints the run reads -----------------------------------------------------
def fetch_checkpoint(location: str, option: str, missing_hint: str = '') -> str:
    """A checkpoint path or http(s) URL -> a local file. URLs are downloaded once into the
    torch hub cache, checked; a failure is one line that says to pass a local file as ``option``."""
    location = str(location)
    if re.match(r'https?://', location):
        return download(location, offline_hint=f'download it elsewhere and pass its local path as {option}')
    if not os.path.isfile(location):
        raise UserError(f'checkpoint not found: {location} ({missing_hint or "given as " + option})')
    return location


def pretrained_checkpoints(cfg, where: str = 'model'):
    """(config key, checkpoint) of every ``init_cfg=dict(type='Pretrained', ...)`` in ``cfg``."""
    if isinstance(cfg, dict):
        init = cfg.get('init_cfg')
        if isinstance(init, dict) and init.get('type') == 'Pretrained' and init.get('checkpoint'):
            yield f'{where}.init_cfg.checkpoint', init['checkpoint']
        for key, value in cfg.items():
            if key != 'init_cfg':
                yield from pretrained_checkpoints(value, f'{where}.{key}')
    elif isinstance(cfg, (list, tuple)):
        for index, value in enumerate(cfg):
            yield from pretrained_checkpoints(value, f'{where}.{index}')


def prepare_checkpoints(cfg, pretrained: bool = True,
                        load_from_option: str = '--cfg-options load_from=PATH') -> None:
    """Before the runner starts: fetch every checkpoint the run will read (once, so that N
    processes find them cached), fail in one line on a missing one, and let ``load_from``
    take mmdet 2.x / mmseg 0.x files (mm_common.legacy). ``pretrained=False`` skips the
    init_cfg weights, which testing never loads."""
    from mm_efficient_backbones.mm_common.legacy import add_legacy_hook
    for key, checkpoint in pretrained_checkpoints(cfg.get('model', {})) if pretrained else ():
        fetch_checkpoint(checkpoint, f'--cfg-options {key}=PATH', missing_hint=MISSING_PRETRAINED_HINT)
    if cfg.get('load_from'):
        cfg.load_from = fetch_checkpoint(cfg.load_from, load_from_option)
    add_legacy_hook(cfg)


def build_runner(cfg, splits: Iterable[str]):
    """Check the data the run needs, allow mmengine's checkpoints, build the runner."""
    check_data_roots(cfg, splits)
    allow_mmengine_checkpoints()
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner
    return RUNNERS.build(cfg) if 'runner_type' in cfg else Runner.from_cfg(cfg)


def check_data_roots(cfg, splits: Iterable[str]) -> None:
    """Fail with one line when a dataloader's data root or annotation file is missing."""
    for split in splits:
        loader = cfg.get(f'{split}_dataloader')
        if not loader:
            continue
        dataset = loader.get('dataset', {})
        while 'dataset' in dataset:  # RepeatDataset / ConcatDataset-style wrappers
            dataset = dataset['dataset']
        root = dataset.get('data_root', '')
        if root and not os.path.isdir(root):
            raise UserError(f'{split} data root not found: {root} (see README "Training on COCO and ADE20K" '
                            f'for the layout, or pass --cfg-options {split}_dataloader.dataset.data_root=PATH)')
        ann = dataset.get('ann_file')
        if ann:
            path = ann if os.path.isabs(ann) else os.path.join(root, ann)
            if not os.path.exists(path):
                raise UserError(f'{split} annotation file not found: {path}')


# ---- the runs the tools start ------------------------------------------------------
def warn(message: str) -> None:
    """A one-line warning on stderr (the tools' ``error:`` lines go there too)."""
    import sys
    print(message, file=sys.stderr, flush=True)


def train_from_config(cfg, launcher: str = 'none', resume=None, allow_partial: bool = False,
                      amp: bool = False, auto_scale_lr: bool = False, check_only: bool = False,
                      amp_dtype: str = None) -> None:
    """tools/train.py: check the data and every checkpoint the run reads (before any work),
    then train with atomic checkpoint saving. ``resume``: None, 'auto' or a path. ``amp``:
    mixed precision in ``amp_dtype`` (mm_common.precision; None: bf16 where the GPU has it)."""
    from .atomic_checkpoint import make_checkpoint_saving_atomic
    from .checkpoint_fit import check_training_checkpoints
    from .precision import amp_optim_wrapper
    if amp:
        cfg.optim_wrapper = amp_optim_wrapper(cfg.optim_wrapper, amp_dtype, warn=warn)
    check_data_roots(cfg, ('train', 'val'))  # before any download
    prepare_checkpoints(cfg)
    check_training_checkpoints(cfg, resume, allow_partial, warn=warn)
    if check_only:
        return
    how = configure_launch(cfg, launcher)
    if auto_scale_lr:
        cfg.setdefault('auto_scale_lr', {})['enable'] = True
    make_checkpoint_saving_atomic()
    runner = build_runner(cfg, ('train', 'val'))
    runner.logger.info(f'launch: {how}')
    runner.train()


def draw_predictions(cfg, show_dir: str) -> None:
    """Turn on mmdet's / mmseg's own visualisation hook for the test set, as their test.py
    does: DetVisualizationHook writes SHOW_DIR/<image name>; SegVisualizationHook draws
    through the visualizer, whose save_dir becomes SHOW_DIR (SHOW_DIR/vis_data/vis_image/)."""
    hook = (cfg.get('default_hooks') or {}).get('visualization')
    if not hook:
        raise UserError('--show-dir needs default_hooks.visualization in the config '
                        '(the mmdet::/mmseg:: default_runtime bases have it)')
    hook['draw'] = True
    if cfg.get('default_scope') == 'mmdet':
        hook['test_out_dir'] = os.path.abspath(show_dir)
    else:
        cfg.visualizer['save_dir'] = os.path.abspath(show_dir)
        hook['interval'] = 1  # SegVisualizationHook draws only every interval-th test batch


def evaluate_checkpoint(cfg, checkpoint: str, launcher: str = 'none', allow_partial: bool = False,
                     out: str = None, show_dir: str = None, check_only: bool = False, tta: bool = False) -> dict:
    """tools/test.py: check the data and the checkpoint against the config's model (before any
    work), then evaluate it, with the config's test-time augmentation if ``tta`` (mm_common.tta);
    returns the metrics (empty with ``check_only``)."""
    from .checkpoint_fit import check_checkpoint_fits
    from .tta import require_tta, use_tta
    if tta:
        require_tta(cfg)
    cfg.load_from = checkpoint
    check_data_roots(cfg, ('test',))  # before any download
    if show_dir:
        draw_predictions(cfg, show_dir)
    if out and not out.endswith(('.pkl', '.pickle')):
        raise UserError(f'--out {out}: give a .pkl file for the raw predictions')
    # URL -> hub cache; an mmdet 2.x / mmseg 0.x file is mapped as it loads (mm_common.legacy).
    prepare_checkpoints(cfg, pretrained=False, load_from_option='CHECKPOINT')
    check_checkpoint_fits(cfg, cfg.load_from, allow_partial)
    if check_only:
        return {}
    if tta:
        use_tta(cfg)
    configure_launch(cfg, launcher)
    runner = build_runner(cfg, ('test',))
    if out:
        from mmengine.evaluator import DumpResults
        runner.test_evaluator.metrics.append(DumpResults(out_file_path=out))
    return runner.test()
