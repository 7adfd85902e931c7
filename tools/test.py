"""Evaluate a checkpoint on the config's test set (COCO bbox/segm mAP or mIoU).

    python tools/test.py configs/recnext_m3_coco.py work_dirs/recnext_m3_coco/epoch_12.pth
    tools/dist_test.sh configs/recnext_m3_coco.py CHECKPOINT 8
    python tools/test.py configs/convnext1d_tiny_1d_ade20k.py CHECKPOINT --tta   # multi-scale + flip

``--tta`` runs the test-time augmentation the config declares (``tta_pipeline``, ``tta_model``)
as mmseg's / mmdet's own ``tools/test.py --tta`` do, and names its metrics ``tta/<metric>``
(``tta/mIoU``) apart from the single-scale ones (mm_common.tta). The ConvNeXt-1D ADE20K configs
declare the Oriented1D authors' protocol: 0.5-1.75 x (2048, 512), flip, whole-image inference,
softmax probabilities averaged as mmseg 0.x's ``--aug-test``.

The checkpoint is checked against the config's model first (mm_common.checkpoint_fit): a
file of another backbone, arch or task, or one that covers only part of the model, is refused.
"""
import argparse
import numbers
import sys

from mm_efficient_backbones.mm_common.config import load_config
from mm_efficient_backbones.mm_common.runtime import exit_code_of, evaluate_checkpoint


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Test a detector or segmentor')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file or URL; mmdet 2.x / mmseg 0.x files work too')
    parser.add_argument('--work-dir', help='where the test log goes (default: work_dirs/<config name>)')
    parser.add_argument('--out', help='dump raw predictions to this .pkl file')
    parser.add_argument('--show-dir', help='save every test image with its predictions drawn in this folder')
    parser.add_argument('--tta', action='store_true',
                        help="test-time augmentation as the config declares it (tta_pipeline, tta_model); "
                        "metrics are named tta/<metric>, e.g. tta/mIoU")
    parser.add_argument('--allow-partial', action='store_true',
                        help='evaluate a checkpoint that covers only part of the model')
    parser.add_argument('--cfg-options', nargs='+', default=[], metavar='KEY=VALUE')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none')
    parser.add_argument('--local-rank', '--local_rank', type=int, default=0)
    parser.add_argument('--check-only', action='store_true',
                        help='check the config, data root and checkpoint (fetching a URL), then exit')
    return parser.parse_args(argv)


def test(args) -> None:
    metrics = evaluate_checkpoint(
        load_config(args.config, args.cfg_options, args.work_dir), args.checkpoint, launcher=args.launcher,
        tta=args.tta,
        allow_partial=args.allow_partial, out=args.out, show_dir=args.show_dir, check_only=args.check_only)
    if metrics:
        # numpy scalars (mmseg's metrics) format like floats.
        print(' '.join(f'{k}={float(v):.4f}' if isinstance(v, numbers.Real) else f'{k}={v}'
                       for k, v in metrics.items()))


def main(argv=None) -> int:
    args = parse_args(argv)
    return exit_code_of(lambda: test(args))


if __name__ == '__main__':
    sys.exit(main())
