"""Train a detector or segmentor from a config, on one process, N GPUs or N CPU processes.

    python tools/train.py configs/recnext_m3_coco.py
    tools/dist_train.sh configs/recnext_m3_coco.py 8          # 8 GPUs (or 8 CPU processes)
    python tools/train.py CONFIG --resume                      # resume the latest checkpoint
    python tools/train.py CONFIG --resume work_dirs/x/epoch_4.pth --amp
    python tools/train.py CONFIG --amp-dtype fp16                # mixed precision in float16

The config's ``default_scope`` (mmdet or mmseg, from its ``_base_``) picks the task. The
checkpoint a run loads (``--resume``, ``load_from``) is checked against the config's model
first (mm_common.checkpoint_fit); checkpoints are saved atomically (mm_common.atomic_checkpoint).
"""
import argparse
import sys

from mm_efficient_backbones.mm_common.config import load_config
from mm_efficient_backbones.mm_common.runtime import exit_code_of, train_from_config


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Train a detector or segmentor')
    parser.add_argument('config', help='config file')
    parser.add_argument('--work-dir', help='where logs and checkpoints go '
                        '(default: work_dirs/<config name>)')
    parser.add_argument('--resume', nargs='?', const='auto', default=None,
                        help='resume from CHECKPOINT, or from the newest readable one in work-dir if no path')
    parser.add_argument('--allow-partial', action='store_true',
                        help='load a checkpoint (load_from, --resume) that covers only part of the model')
    parser.add_argument('--amp', action='store_true',
                        help='mixed precision on a GPU: bfloat16 where the GPU supports it, else float16 '
                        'with a dynamic loss scale (and a warning)')
    parser.add_argument('--amp-dtype', choices=('bf16', 'fp16'),
                        help='mixed precision in this type (implies --amp)')
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


def main(argv=None) -> int:
    args = parse_args(argv)
    return exit_code_of(lambda: train_from_config(
        load_config(args.config, args.cfg_options, args.work_dir), launcher=args.launcher,
        resume=args.resume, allow_partial=args.allow_partial, amp=args.amp or bool(args.amp_dtype),
        amp_dtype=args.amp_dtype, auto_scale_lr=args.auto_scale_lr, check_only=args.check_only))


if __name__ == '__main__':
    sys.exit(main())
