"""Train a detector or segmentor from a config, on one process, N GPUs or N CPU processes.

    python tools/train.py configs/recnext_m3_coco.py
    tools/dist_train.sh configs/recnext_m3_coco.py 8          # 8 GPUs (or 8 CPU processes)
    python tools/train.py CONFIG --resume                      # resume the latest checkpoint
    python tools/train.py CONFIG --resume work_dirs/x/epoch_4.pth --amp

The config's ``default_scope`` (mmdet or mmseg, from its ``_base_``) picks the task.
"""
import argparse
import os.path as osp
import sys
import warnings
# Printed by every process when mmengine imports setuptools' pkg_resources; nothing a user can act on.
warnings.filterwarnings('ignore', message='pkg_resources is deprecated as an API')

from mm_efficient_backbones.mm_common.runtime import (UserError, build_runner, check_data_roots,
                               configure_launch, exit_code_of, one_line, prepare_checkpoints)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Train a detector or segmentor')
    parser.add_argument('config', help='config file')
    parser.add_argument('--work-dir', help='where logs and checkpoints go '
                        '(default: work_dirs/<config name>)')
    parser.add_argument('--resume', nargs='?', const='auto', default=None,
                        help='resume from CHECKPOINT, or from the latest one in work-dir if no path')
    parser.add_argument('--amp', action='store_true', help='mixed precision (GPU)')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the lr by (total batch / the config\'s base batch)')
    parser.add_argument('--cfg-options', nargs='+', default=[], metavar='KEY=VALUE',
                        help='override config entries, e.g. train_cfg.max_epochs=1')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none')
    parser.add_argument('--local-rank', '--local_rank', type=int, default=0)
    parser.add_argument('--check-only', action='store_true',
                        help='check the config, data roots and checkpoints (fetching URLs into the '
                        'cache), then exit; the dist/slurm scripts run this once before starting')
    return parser.parse_args(argv)


def load_config(args):
    from mmengine.config import Config, DictAction
    if not osp.isfile(args.config):
        raise UserError(f'config not found: {args.config}')
    try:
        cfg = Config.fromfile(args.config)
    except (SyntaxError, ImportError, FileNotFoundError, KeyError, TypeError, ValueError) as err:
        raise UserError(f'cannot load config {args.config}: {one_line(err)}') from None
    if args.cfg_options:
        options = argparse.Namespace()
        try:
            DictAction(option_strings=[], dest='options')(None, options, args.cfg_options)
            cfg.merge_from_dict(options.options)
        except (KeyError, TypeError, ValueError) as err:
            raise UserError(f'invalid config option: {one_line(err)}') from None
    cfg.work_dir = args.work_dir or cfg.get('work_dir') or osp.join(
        'work_dirs', osp.splitext(osp.basename(args.config))[0])
    return cfg


def train(args) -> None:
    cfg = load_config(args)
    check_data_roots(cfg, ('train', 'val'))  # before any download
    prepare_checkpoints(cfg)
    if args.resume not in (None, 'auto') and not osp.isfile(args.resume):
        raise UserError(f'checkpoint to resume not found: {args.resume}')
    if args.check_only:
        return
    how = configure_launch(cfg, args.launcher)
    if args.amp:
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    if args.auto_scale_lr:
        cfg.setdefault('auto_scale_lr', {})['enable'] = True
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume:
        cfg.resume, cfg.load_from = True, args.resume
    runner = build_runner(cfg, ('train', 'val'))
    runner.logger.info(f'launch: {how}')
    runner.train()


def main(argv=None) -> int:
    args = parse_args(argv)
    return exit_code_of(lambda: train(args))


if __name__ == '__main__':
    sys.exit(main())
