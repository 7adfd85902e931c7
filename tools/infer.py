"""Run a trained detector or segmentor on any images and draw its predictions.

    python tools/infer.py configs/recnext_m3_coco.py epoch_12.pth photos/ --out-dir vis_out
    python tools/infer.py configs/demo/recnext_m0_demo_ade.py iter_200.pth a.jpg b.jpg --out-dir vis_out

mmdet's DetInferencer (boxes, masks, class names and scores above ``--score-thr``) or
mmseg's MMSegInferencer (a coloured label map over the image) does the work, as the
config's ``default_scope`` says. Drawn images go to OUT_DIR/vis/, raw predictions to
OUT_DIR/preds/ (json, detection) or OUT_DIR/pred/ (label PNGs, segmentation).
"""
import argparse
import os.path as osp
import sys
from pathlib import Path
from typing import List

from mm_efficient_backbones.mm_common.runtime import (UserError, allow_mmengine_checkpoints,
                               exit_code_of)
from mm_efficient_backbones.tools.analysis.common import check_readable, list_images
from mm_efficient_backbones.tools.train import load_config

# Annotation loading has no place in inference on arbitrary images.
ANNOTATION_LOADERS = ('LoadAnnotations', 'LoadDepthAnnotation')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Draw a detector\'s or segmentor\'s predictions on images')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file (e.g. from tools/train.py)')
    parser.add_argument('inputs', nargs='+', help='images, or folders of images')
    parser.add_argument('--out-dir', default='outputs', help='where vis/ and the predictions go (default outputs)')
    parser.add_argument('--score-thr', type=float, default=0.3, help='detection: lowest score drawn (default 0.3)')
    parser.add_argument('--device', default=None, help='e.g. cpu or cuda:0 (default: cuda if available)')
    parser.add_argument('--cfg-options', nargs='+', default=[], metavar='KEY=VALUE')
    return parser.parse_args(argv)


def without_annotation_loading(cfg) -> None:
    pipeline = cfg.test_dataloader.dataset.pipeline
    pipeline[:] = [step for step in pipeline if step.get('type') not in ANNOTATION_LOADERS]


def infer(args) -> List[Path]:
    if not osp.isfile(args.checkpoint):
        raise UserError(f'checkpoint not found: {args.checkpoint}')
    if not 0 <= args.score_thr <= 1:
        raise UserError(f'--score-thr {args.score_thr} must be between 0 and 1')
    images = [image for path in args.inputs for image in list_images(path)]
    check_readable(images)
    args.work_dir = args.out_dir  # load_config wants one; nothing is written there but outputs
    cfg = load_config(args)
    without_annotation_loading(cfg)
    allow_mmengine_checkpoints()
    inputs = [str(path) for path in images]
    scope = cfg.get('default_scope')
    if scope == 'mmdet':
        from mm_efficient_backbones import detection  # noqa: F401  (registers the backbones)
        from mmdet.apis import DetInferencer
        inferencer = DetInferencer(model=cfg, weights=args.checkpoint, device=args.device)
        inferencer(inputs, out_dir=args.out_dir, pred_score_thr=args.score_thr, no_save_pred=False)
    elif scope == 'mmseg':
        from mm_efficient_backbones import segmentation  # noqa: F401
        from mmseg.apis import MMSegInferencer
        inferencer = MMSegInferencer(model=cfg, weights=args.checkpoint, device=args.device)
        inferencer(inputs, out_dir=args.out_dir)
    else:
        raise UserError(f"{args.config}: default_scope is {scope!r}; expected 'mmdet' or 'mmseg' "
                        '(inherit an mmdet:: or mmseg:: base config)')
    drawn = [Path(args.out_dir) / 'vis' / path.name for path in images]
    for path in drawn:
        print(path)
    return drawn


def main(argv=None) -> int:
    args = parse_args(argv)
    return exit_code_of(lambda: infer(args))


if __name__ == '__main__':
    sys.exit(main())
