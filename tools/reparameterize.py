"""Reparameterise a trained detector or segmentor checkpoint into the deploy form.

RepNeXt trains multi-branch convs that collapse into single convs for inference. This
tool reads a checkpoint written by ``tools/train.py`` (mmdet or mmseg), collapses its
``backbone.*`` weights and writes a checkpoint that a config with
``model.backbone.deploy=True`` loads as it is; the neck and heads are copied unchanged.
The result is checked before it is written: the deploy backbone, built directly, must
give the training form's features within 1e-4 (relative). The work is
``backbones.weights.reparameterize``.

Usage::

    python tools/reparameterize.py work_dirs/mask-rcnn_repnext_m3/epoch_12.pth \\
        checkpoints/mask-rcnn_repnext_m3_deploy.pth
    python tools/test.py configs/repnext_m3_coco.py checkpoints/mask-rcnn_repnext_m3_deploy.pth \\
        --cfg-options model.backbone.deploy=True

``--single-kernel`` also collapses each RepNeXt ChunkConv into one 11x11 conv (level
2; then test with ``model.backbone.single_kernel=True`` too). The arch is read from the
weights. Optimizer, scheduler and message-hub states are dropped: they belong to the
training form and cannot resume the deploy one.

Exit status: 0 on success, 2 for a bad command line or a checkpoint that cannot be
reparameterised (one ``error:`` line on stderr, no output left behind).
"""
import argparse
import sys
from typing import Optional, Sequence

from mm_efficient_backbones.backbones.errors import exit_code_of
from mm_efficient_backbones.backbones.weights.reparameterize import reparameterize_file
from mm_efficient_backbones.mm_common.safe_load import allow_mmengine_checkpoints

PROG = 'reparameterize'


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split('\n\n')[0])
    parser.add_argument('checkpoint', help='detector or segmentor checkpoint from tools/train.py')
    parser.add_argument('output', help='where to write the deploy-form checkpoint')
    parser.add_argument('--single-kernel', action='store_true',
                        help='RepNeXt: also collapse each ChunkConv into one 11x11 conv (deploy level 2)')
    parser.add_argument('--force', action='store_true', help='overwrite an existing output file')
    parser.add_argument('--trust-checkpoint', action='store_true',
                        help='allow arbitrary unpickling (runs code from the file: trusted sources only)')
    return parser.parse_args(argv)


def reparameterize(args: argparse.Namespace) -> None:
    allow_mmengine_checkpoints()  # tools/train.py's files then load with weights_only=True
    print(reparameterize_file(args.checkpoint, args.output, single_kernel=args.single_kernel,
                              force=args.force, trust=args.trust_checkpoint))
    print(f'wrote {args.output}; test it with --cfg-options model.backbone.deploy=True'
          + (' model.backbone.single_kernel=True' if args.single_kernel else ''))


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    return exit_code_of(lambda: reparameterize(args), prog=PROG)


if __name__ == '__main__':
    sys.exit(main())
