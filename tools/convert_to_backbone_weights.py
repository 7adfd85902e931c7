"""Turn a published classifier checkpoint into a backbone checkpoint for mmdet / mmseg.

The checkpoint pipeline (``backbones/weights/pipeline.py``, the one ``init_cfg`` runs too) finds
the weights inside any common wrapper, drops the classifier-only tensors, maps the
authors' key spellings to the backbone's, centre-crops kernels larger than the
backbone's where the family allows it, and this tool writes ``DIR/<model>_backbone.pth``
atomically as ``{'state_dict': ..., 'meta': {...}}``. Configs then load it with
``init_cfg=dict(type='Pretrained', checkpoint='checkpoints/<model>_backbone.pth')``.

Usage::

    convert_to_backbone_weights --model recnext_m3 --checkpoint recnext_m3.pth \\
        --output-dir checkpoints --verify
    python tools/convert_to_backbone_weights.py --model recnext_m3 \\
        --checkpoint recnext_m3_ema.pth --output-dir checkpoints --ema --force
    # Oriented1D's spelling: --variant joins the model name (convnext_tiny_1d)
    python tools/convert_to_backbone_weights.py --model convnext_tiny --variant 1d \\
        --checkpoint convnext_tiny_1d.pth --output_dir checkpoints

Options: ``--ema`` uses the EMA weights when the file has both; ``--verify`` loads
the result strictly into the backbone and runs one forward pass; ``--deploy`` writes
``<model>_backbone_deploy.pth`` in the reparameterised form that a ``deploy=True``
backbone builds directly (families with structural reparameterisation, e.g. RepNeXt); ``--force``
overwrites an existing output; ``--trust-checkpoint`` allows arbitrary unpickling
(only for files from a source you trust). Each crop is reported with the fraction of
the tensor's L2 norm it removed, 1 - |crop| / |full|.

Exit status: 0 on success, 2 for a bad command line or a checkpoint that cannot be
converted (one ``error:`` line on stderr, no output file left behind).
"""
import argparse
import sys
import time
from typing import Optional, Sequence

from mm_efficient_backbones.backbones import registry
from mm_efficient_backbones.backbones.errors import exit_code_of
from mm_efficient_backbones.backbones.weights.pipeline import Report, convert_checkpoint

PROG = 'convert_to_backbone_weights'


class PrintedReport(Report):
    """One line per step on stdout, with the step's wall time; warnings on stderr."""

    def start(self, steps: Sequence[str]) -> None:
        self.steps, self.last = list(steps), time.perf_counter()

    def done(self, step: str, message: str) -> None:
        now = time.perf_counter()
        index = self.steps.index(step) + 1
        print(f'[{index}/{len(self.steps)}] {step:<6} {message} ({now - self.last:.2f} s)', flush=True)
        self.last = now

    def detail(self, message: str) -> None:
        print(f'        {message}', flush=True)

    def warn(self, message: str) -> None:
        print(f'{PROG}: warning: {message}', file=sys.stderr, flush=True)


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split('\n\n')[0])
    parser.add_argument('--model', required=True,
                        help=f'target backbone, one of: {", ".join(registry.model_names())}')
    parser.add_argument('--variant', help='appended to the model name with an underscore, as in '
                                          "Oriented1D's spelling: convnext_tiny + 1d = convnext_tiny_1d")
    parser.add_argument('--checkpoint', required=True, help='classifier checkpoint (path or URL) to convert')
    parser.add_argument('--output-dir', '--output_dir', dest='output_dir', required=True,
                        help='writes OUTPUT_DIR/<model>_backbone.pth')
    parser.add_argument('--ema', action='store_true', help="use the EMA weights ('model_ema')")
    parser.add_argument('--verify', action='store_true',
                        help='load the result strictly into the backbone and run a forward pass')
    parser.add_argument('--deploy', action='store_true',
                        help='write the reparameterised (deploy=True) form as <model>_backbone_deploy.pth')
    parser.add_argument('--force', action='store_true', help='overwrite an existing output file')
    parser.add_argument('--trust-checkpoint', action='store_true',
                        help='allow arbitrary unpickling (runs code from the file: trusted sources only)')
    args = parser.parse_args(argv)
    if args.variant:
        args.model = f'{args.model}_{args.variant}'
    return args


def convert(args: argparse.Namespace) -> None:
    result = convert_checkpoint(args.model, args.checkpoint, args.output_dir, registry.model_to_backbone(),
                                prefer_ema=args.ema, deploy=args.deploy, verify_output=args.verify,
                                force=args.force, trust=args.trust_checkpoint, report=PrintedReport())
    if args.verify:
        print(f'ok: {result.tensors} tensors, {result.cropped} cropped', flush=True)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    return exit_code_of(lambda: convert(args), prog=PROG)


if __name__ == '__main__':
    sys.exit(main())
