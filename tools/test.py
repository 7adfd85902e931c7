"""Evaluate a checkpoint on the config's test set (COCO bbox/segm mAP or mIoU).

    python tools/test.py configs/recnext_m3_coco.py work_dirs/recnext_m3_coco/epoch_12.pth
    tools/dist_test.sh configs/recnext_m3_coco.py CHECKPOINT 8
"""
import argparse
import numbers
import os.path as osp
import sys

from mm_efficient_backbones.tools.train import load_config  # first: it quiets third-party import noise
from mm_efficient_backbones.mm_common.runtime import (build_runner, check_data_roots, configure_launch,
                               exit_code_of, prepare_checkpoints)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Test a detector or segmentor')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file or URL; mmdet 2.x / mmseg 0.x files work too')
    parser.add_argument('--work-dir', help='where the test log goes (default: work_dirs/<config name>)')
    parser.add_argument('--out', help='dump raw predictions to this .pkl file')
    parser.add_argument('--show-dir', help='save every test image with its predictions drawn in this folder')
    parser.add_argument('--cfg-options', nargs='+', default=[], metavar='KEY=VALUE')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none')
    parser.add_argument('--local-rank', '--local_rank', type=int, default=0)
    parser.add_argument('--check-only', action='store_true',
                        help='check the config, data root and checkpoint (fetching a URL), then exit')
    return parser.parse_args(argv)


def draw_predictions(cfg, show_dir: str) -> None:
    """Turn on mmdet's / mmseg's own visualisation hook for the test set, as their test.py
    does: DetVisualizationHook writes SHOW_DIR/<image name>; SegVisualizationHook draws
    through the visualizer, whose save_dir becomes SHOW_DIR (SHOW_DIR/vis_data/vis_image/)."""
    hook = cfg.get('default_hooks', {}).get('visualization')
    if not hook:
        raise UserError('--show-dir needs default_hooks.visualization in the config '
                        '(the mmdet::/mmseg:: default_runtime bases have it)')
    hook['draw'] = True
    if cfg.get('default_scope') == 'mmdet':
        hook['test_out_dir'] = osp.abspath(show_dir)
    else:
        cfg.visualizer['save_dir'] = osp.abspath(show_dir)
        hook['interval'] = 1  # SegVisualizationHook draws only every interval-th test batch


def test(args) -> None:
    cfg = load_config(args)
    cfg.load_from = args.checkpoint
    check_data_roots(cfg, ('test',))  # before any download
    # URL -> hub cache; an mmdet 2.x / mmseg 0.x file is mapped as it loads (mm_common.legacy).
    prepare_checkpoints(cfg, pretrained=False, load_from_option='CHECKPOINT')
    if args.check_only:
        return
    configure_launch(cfg, args.launcher)
    if args.show_dir:
        draw_predictions(cfg, args.show_dir)
    runner = build_runner(cfg, ('test',))
    if args.out:
        from mmengine.evaluator import DumpResults
        runner.test_evaluator.metrics.append(DumpResults(out_file_path=args.out))
    metrics = runner.test()
    # numpy scalars (mmseg's metrics) format like floats.
    print(' '.join(f'{k}={float(v):.4f}' if isinstance(v, numbers.Real) else f'{k}={v}'
                   for k, v in metrics.items()))


def main(argv=None) -> int:
    args = parse_args(argv)
    return exit_code_of(lambda: test(args))


if __name__ == '__main__':
    sys.exit(main())
