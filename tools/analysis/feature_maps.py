"""Feature maps inside a backbone: hook modules, draw each output's channel mean next to the
image (how the modules are picked: mm_common/feature_maps.py).

    python tools/analysis/feature_maps.py recnext_m3 cat.jpg [--modules NAME ...] \\
        [--checkpoint PATH] [--size 224] [--out feature_maps.png]
"""
import argparse
import sys

from mm_efficient_backbones.backbones.errors import exit_code_of
from mm_efficient_backbones.mm_common.feature_maps import feature_maps


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Draw channel-mean feature maps of hooked modules')
    parser.add_argument('model', help='timm name (e.g. recnext_m3) or mm backbone TYPE:ARCH')
    parser.add_argument('image', help='an image (or a folder: its first image)')
    parser.add_argument('--modules', nargs='+', metavar='NAME',
                        help='dotted module names to hook (default: picked per family, see --help)')
    parser.add_argument('--checkpoint', help='classifier or converted backbone checkpoint (default: random init)')
    parser.add_argument('--size', type=int, default=224, help='resize to SIZE x SIZE (0 keeps the size)')
    parser.add_argument('--out', default='feature_maps.png', help='the PNG to write')
    parser.add_argument('--device', help='e.g. cpu or cuda:0 (default: cuda if available)')
    return parser.parse_args(argv)


def draw_feature_maps(args) -> None:
    for label, feature in feature_maps(args.model, args.image, args.modules, args.checkpoint, args.size,
                                       args.out, args.device):
        print(f'{label}: {tuple(feature.shape)}')
    print(f'figure: {args.out}')


def main(argv=None) -> int:
    args = parse_args(argv)
    return exit_code_of(lambda: draw_feature_maps(args))


if __name__ == '__main__':
    sys.exit(main())
