"""Effective receptive fields (ERF) of backbones, side by side, by RepLKNet's method
(the method and the files written: mm_common/erf.py).

    python tools/analysis/erf.py --models recnext_m3 repnext_m3 convnext_tiny_1d \\
        --images DIR --num-images 50 --out erf.png [--checkpoint PATH|none ...] [--stage 3] [--json]
"""
import argparse
import sys

from mm_efficient_backbones.backbones.errors import exit_code_of
from mm_efficient_backbones.mm_common.erf import effective_receptive_fields


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Effective receptive fields of backbones (RepLKNet method)')
    parser.add_argument('--models', nargs='+', required=True,
                        help='timm names (e.g. recnext_m3 resnet50) or mm backbones as TYPE:ARCH')
    parser.add_argument('--images', required=True, help='a folder of images (or one image)')
    parser.add_argument('--num-images', type=int, default=50, help='use the first N images (default 50)')
    parser.add_argument('--out', default='erf.png', help='the PNG to write (default erf.png)')
    parser.add_argument('--checkpoint', nargs='+', metavar='PATH',
                        help="one per model, in order ('none' for random init); default: random init")
    parser.add_argument('--stage', type=int, default=-1, help='feature level whose output is used (default: last)')
    parser.add_argument('--size', type=int, default=1024, help='input side in pixels (default 1024)')
    parser.add_argument('--device', help='e.g. cpu or cuda:0 (default: cuda if available)')
    parser.add_argument('--json', action='store_true', help='also write the ratios to OUT_STEM.json')
    return parser.parse_args(argv)


def erf(args) -> None:
    results = effective_receptive_fields(args.models, args.images, args.num_images, args.out, args.checkpoint,
                                         args.stage, args.size, args.device, write_json=args.json)
    for result in results:
        ratios = ' '.join(f"{k}={v['area_ratio']:.4f}" for k, v in result['ratios'].items())
        print(f"{result['model']} ({result['weights']}, stage {result['stage']}): {ratios}")
    if args.json:
        print(f"ratios: {results[0]['json']}")
    print(f'figure: {args.out}')


def main(argv=None) -> int:
    args = parse_args(argv)
    return exit_code_of(lambda: erf(args))


if __name__ == '__main__':
    sys.exit(main())
