"""Run a trained detector or segmentor on any images and draw its predictions.

    python tools/infer.py configs/recnext_m3_coco.py epoch_12.pth photos/ --out-dir vis_out
    python tools/infer.py configs/demo/recnext_m0_demo_ade.py iter_200.pth a.jpg b.jpg --out-dir vis_out

mmdet's DetInferencer (boxes, masks, class names and scores above ``--score-thr``) or
mmseg's MMSegInferencer (a coloured label map over the image) does the work, as the
config's ``default_scope`` says. Drawn images go to OUT_DIR/vis/, raw predictions to
OUT_DIR/preds/ (json, detection) or OUT_DIR/pred/ (label PNGs, segmentation). The
checkpoint is checked against the config's model first (mm_common.checkpoint_fit).
"""
import argparse
import sys

from mm_efficient_backbones.mm_common.config import load_config
from mm_efficient_backbones.mm_common.inference import infer_images
from mm_efficient_backbones.mm_common.runtime import exit_code_of


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Draw a detector\'s or segmentor\'s predictions on images')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file (e.g. from tools/train.py)')
    parser.add_argument('inputs', nargs='+', help='images, or folders of images')
    parser.add_argument('--out-dir', default='outputs', help='where vis/ and the predictions go (default outputs)')
    parser.add_argument('--score-thr', type=float, default=0.3, help='detection: lowest score drawn (default 0.3)')
    parser.add_argument('--device', default=None, help='e.g. cpu or cuda:0 (default: cuda if available)')
    parser.add_argument('--allow-partial', action='store_true',
                        help='run a checkpoint that covers only part of the model')
    parser.add_argument('--cfg-options', nargs='+', default=[], metavar='KEY=VALUE')
    return parser.parse_args(argv)


def infer(args) -> None:
    # Nothing is written to the work dir; the outputs go to --out-dir.
    cfg = load_config(args.config, args.cfg_options, work_dir=args.out_dir)
    for path in infer_images(cfg, args.checkpoint, args.inputs, args.out_dir, args.score_thr,
                             args.device, args.allow_partial):
        print(path)


def main(argv=None) -> int:
    args = parse_args(argv)
    return exit_code_of(lambda: infer(args))


if __name__ == '__main__':
    sys.exit(main())
