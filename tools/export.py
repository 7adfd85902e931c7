"""Export a model's deploy form to ONNX or OpenVINO, checked in its runtime before it is written.

    python tools/export.py recnext_m3 --format onnx --out recnext_m3.onnx
    python tools/export.py RecNeXt:m3 --checkpoint recnext_m3.pth --format openvino --dynamic --out m3.xml
    python tools/export.py ConvNeXt1D:tiny:1dpp --format onnx --shape 1x3x512x512 --out c1dpp.onnx
    python tools/export.py --all --check --format onnx              # every model, nothing written
    python tools/export.py configs/demo/recnext_m0_demo_coco.py work_dirs/epoch_1.pth \
        --format onnx openvino --out DIR --time 8     # a detector through mmdeploy, checked and timed

MODEL is a timm model of this project (recnext_m3, repnext_m0, rexnet_lite_100,
convnext_tiny_1d, ...) or an mm backbone TYPE:ARCH[:VARIANT] (RecNeXt:m3, RepNeXt:m0,
ReXNet:1.0, ConvNeXt1D:tiny:1d), exported with its stage outputs. The deploy form is exported
(fused; RepNeXt level 1); the runtime's outputs are compared with PyTorch's training form
in fp32 on --shape (and, with --dynamic, on one odd shape too) and a model that differs by
more than 1e-4 (relative) is refused: one error line, exit code 2, no file. A config file
and a checkpoint export a detector or segmentor through mmdeploy (mm_common.deploy): the
exported model is evaluated on the config's val set beside PyTorch and written to
DIR/<runtime>/ only if bbox/segm mAP agree within 0.01 (mIoU within 0.5).
"""
import argparse
import os.path as osp
import sys
from typing import Optional, Sequence

from mm_efficient_backbones.backbones import registry
from mm_efficient_backbones.backbones.errors import exit_code_of, one_line
from mm_efficient_backbones.backbones.export import FORMATS, ExportError, export_model, parse_shape

PROG = 'export'


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split('\n\n', 1)[1])
    parser.add_argument('model', nargs='?', metavar='MODEL_OR_TYPE:ARCH_OR_CONFIG')
    parser.add_argument('mm_checkpoint', nargs='?', metavar='CHECKPOINT',
                        help='with a detector / segmentor config: its checkpoint')
    parser.add_argument('--checkpoint', help="the model's weights (default: its random init, seed 0)")
    parser.add_argument('--format', required=True, nargs='+',
                        help=f"{' or '.join(FORMATS)} (a detector / segmentor may take both)")
    parser.add_argument('--shape', default='1x3x224x224', help='BxCxHxW of the export (default 1x3x224x224)')
    parser.add_argument('--dynamic', action='store_true', help='batch, height and width dynamic')
    parser.add_argument('--out', help='the file to write (.onnx; .xml for OpenVINO, its .bin beside); '
                                      'a folder for a detector / segmentor or with --all')
    parser.add_argument('--all', action='store_true', help='every model and mm backbone of the project')
    parser.add_argument('--check', action='store_true', help='check only, write nothing')
    parser.add_argument('--threads', type=int, help='runtime threads (default: the runtime decides)')
    parser.add_argument('--indices', type=int, help='detector / segmentor: check on the first N val images')
    parser.add_argument('--time', type=int, default=0, metavar='IMAGES',
                        help='detector / segmentor: also time the test-time forward on IMAGES val images')
    return parser.parse_args(argv)


def export_all(args) -> int:
    """Export and check every model; one line per model, exit 1 if any failed."""
    failed = []
    for spec in registry.model_names() + registry.backbone_specs():
        out = None
        if not args.check:
            suffix = '.xml' if args.format == 'openvino' else '.onnx'
            out = f"{args.out}/{spec.replace(':', '_')}{suffix}"
        try:
            export_model(spec, args.format, out, parse_shape(args.shape), args.dynamic, threads=args.threads)
        except Exception as err:  # noqa: BLE001 - one line per model, then the next one
            print(f'{spec}: FAILED: {type(err).__name__}: {one_line(err)}', flush=True)
            failed.append(spec)
    print(f'{len(failed)} failed' + (f": {', '.join(failed)}" if failed else ''), flush=True)
    return 1 if failed else 0


def export_detector_or_segmentor(args) -> None:
    from mm_efficient_backbones.mm_common.deploy import export_mm_model, format_metrics, time_mm_forward
    name = osp.basename(args.model)
    results = export_mm_model(args.model, args.mm_checkpoint, [FORMATS[fmt] for fmt in args.format], args.out,
                              check=True, indices=args.indices)
    for backend, result in results.items():
        print(f'{name}, {backend} ({result["precision"]}): {format_metrics(result)}')
        print(f'    written: {" ".join(result["files"])}')
    exported = {backend: result['files'] for backend, result in results.items()}
    if args.time:
        timing = time_mm_forward(args.model, args.mm_checkpoint, exported, images=args.time)
        eager = timing['torch']
        print(f'{name}, test-time forward (ms/image, {args.time} val images): '
              + ', '.join(f'{runtime} {ms:.1f} ({eager / ms:.2f}x)' for runtime, ms in timing.items()))


def run(args) -> Optional[int]:
    unknown = [fmt for fmt in args.format if fmt not in FORMATS]
    if unknown:
        raise ExportError(f"unsupported format '{unknown[0]}': use one of {', '.join(FORMATS)}")
    mm_model = bool(args.model) and args.model.endswith('.py')
    if len(args.format) > 1 and not mm_model:
        raise ExportError('a model exports to one --format at a time (a detector / segmentor may take both)')
    if not mm_model:
        args.format = args.format[0]
    if args.all:
        if args.model or not (args.check or args.out):
            raise ExportError('--all takes no MODEL and needs --check (write nothing) or --out FOLDER')
        return export_all(args)
    if not args.model:
        raise ExportError('give a MODEL (e.g. recnext_m3, RecNeXt:m3), a CONFIG and CHECKPOINT, or --all')
    if args.model.endswith('.py'):
        if not args.mm_checkpoint or not args.out:
            raise ExportError('a detector / segmentor export takes CONFIG CHECKPOINT --format FMT --out DIR')
        export_detector_or_segmentor(args)
        return 0
    if args.mm_checkpoint:
        raise ExportError(f"unexpected second argument '{args.mm_checkpoint}': pass a model's weights "
                          f'with --checkpoint (a second positional is for a config file)')
    if not args.check and not args.out:
        raise ExportError('give --out FILE (or --check to check without writing)')
    report = export_model(args.model, args.format, None if args.check else args.out, parse_shape(args.shape),
                          args.dynamic, args.checkpoint, threads=args.threads)
    print(f"wrote {', '.join(report['files'])} ({report['precision']} in {report['runtime']})"
          if report['files'] else 'checked; nothing written (--check)')
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    return exit_code_of(lambda: run(parse_args(argv)), prog=PROG)


if __name__ == '__main__':
    sys.exit(main())
