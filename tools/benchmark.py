"""Benchmark the backbones: params, MACs, throughput (training and deploy form), memory,
the runtimes (ONNX Runtime, OpenVINO) beside eager PyTorch, and the cost of one detector /
segmentor training step beside ResNet-50.

    benchmark                                   # every model of this project, CPU (+ CUDA/AMP if present)
    benchmark --models recnext_m3 'repnext_*' resnet50 --shapes 8x224x224
    benchmark --models recnext_m3 --train-step configs/recnext_m3_coco.py configs/recnext_m3_ade20k.py
    benchmark --models recnext_m3 --shapes 8x224x224 --compile deploy   # compiled deploy vs eager training
    benchmark --models recnext_m3 --shapes 8x224x224 1x512x512 --runtime torch onnxruntime openvino
    benchmark --no-models --runtime torch onnxruntime openvino \\
        --test-forward configs/demo/recnext_m0_demo_coco.py work_dirs/demo/coco/epoch_6.pth
    benchmark --no-models --runtime torch onnxruntime openvino --test-forward CONFIG CHECKPOINT \\
        --exported work_dirs/demo/export/coco     # the files tools/export.py wrote there
    benchmark --json results.json

Params are counted on the deploy form (``model.fuse()`` where the model has one), the
form the papers report; the training-form count is given too. MACs are counted at 224x224
by ``torch.utils.flop_counter.FlopCounterMode`` (multiply-accumulates of convolutions,
linear layers and matmuls = FLOPs / 2; element-wise ops, norms and resizes are not
counted, as in the papers). Throughput is images/s of ``torch.inference_mode`` forwards
after warm-up; the training form (eval mode, unfused) and the deploy form are timed in
turn, repeat by repeat, so both see the same machine load; median and min-max are given.
``--runtime onnxruntime openvino`` adds the deploy form exported at each shape (fp32) to
the same rounds, and names the fastest exact form against the eager training form.
``--test-forward CONFIG CHECKPOINT`` does the same for a detector's or segmentor's
test-time forward on its first val images (exported through mmdeploy and checked on them).
The library is backbones/benchmarking/ (no mm imports: it runs where only torch and timm
are installed); the mm parts are mm_common/train_step.py and mm_common/deploy.py. The README's
model-zoo table is scripts/zoo_table.py; the kernel floor of docs/measurements.md is
scripts/kernel_floor.py.
"""
import argparse
import json
import sys
from typing import List, Tuple

import torch

from mm_efficient_backbones.backbones import benchmarking
from mm_efficient_backbones.backbones.benchmarking import (CLOCKS, MAC_COUNTER, RUNTIMES, SpeedOptions,
                                                           format_number)
from mm_efficient_backbones.backbones.errors import UserError, exit_code_of

PROG = 'benchmark'


def parse_shape(text: str) -> Tuple[int, int, int]:
    try:
        batch, height, width = (int(v) for v in text.lower().split('x'))
        return batch, height, width
    except ValueError:
        raise argparse.ArgumentTypeError(f'shape {text!r}: use BATCHxHEIGHTxWIDTH, e.g. 8x224x224') from None


def print_size_table(rows: List[dict]):
    print(f'MACs counted by {MAC_COUNTER} at 224x224 (deploy form)')
    print(f"{'model':<22} {'params M':>9} {'(train)':>8} {'paper':>6} {'diff':>6} {'MACs G':>7} "
          f"{'paper':>6} {'diff':>6}  why")
    for row in rows:
        paper = row['published']
        print(f"{row['model']:<22} {row['params_m']:9.2f} {row['train_params_m']:8.2f} "
              f"{paper.get('params') or '-':>6} {format_number(row['params_diff'], '+.2f'):>6} "
              f"{row['macs_g']:7.2f} {paper.get('macs') or '-':>6} "
              f"{format_number(row['macs_diff'], '+.2f'):>6}  {row['difference_note']}")


def print_test_forward(row: dict):
    from mm_efficient_backbones.mm_common.deploy import format_metrics
    where = f"{row['config']} ({row['images']} val images, {row['threads']} threads)"
    for runtime, check in row['checks'].items():
        print(f'{where}: {runtime} ({check["precision"]}) {format_metrics(check)}')
    print(f'{where}: test-time forward, ms/image: ' + ', '.join(
        f'{runtime} {ms:.1f} ({row["speedup"][runtime]:.2f}x)' for runtime, ms in row['ms_per_image'].items())
        + f" | fastest fp32: {row['fastest_fp32']['form']} {row['fastest_fp32']['speedup']:.2f}x eager",
        flush=True)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split('\n\n', 1)[1])
    parser.add_argument('--models', nargs='+', metavar='NAME_OR_GLOB',
                        help="e.g. recnext_m3 'repnext_*' resnet50 (default: every model of this project)")
    parser.add_argument('--no-models', action='store_true',
                        help='no backbone (with --train-step or --test-forward only)')
    parser.add_argument('--shapes', nargs='+', type=parse_shape, metavar='BxHxW',
                        default=[(8, 224, 224), (1, 512, 512), (1, 800, 1333)])
    parser.add_argument('--devices', nargs='+', default=None,
                        help='default: cpu, and cuda when available')
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--clock', choices=list(CLOCKS), default='wall',
                        help="'process': CPU time of this process (with OMP_NUM_THREADS=1 on a shared CPU)")
    parser.add_argument('--no-amp', action='store_true', help='fp32 on CUDA too (default: fp16 autocast)')
    parser.add_argument('--channels-last', choices=['auto', 'on', 'off'], default='auto',
                        help='convert models and inputs (auto: on CUDA only; the CPU deploy forms '
                             'choose their own layout)')
    parser.add_argument('--compile', nargs='?', const='both', choices=['both', 'deploy'],
                        help="time torch.compile(model) (weights frozen, as for inference); "
                             "'--compile deploy' compiles the deploy form only, against the eager "
                             "training form (the authors' code)")
    parser.add_argument('--runtime', nargs='+', choices=RUNTIMES, default=['torch'],
                        help='CPU: also time the deploy form exported to ONNX Runtime and/or OpenVINO '
                             '(fp32), beside the eager training and deploy forms, in the same rounds')
    parser.add_argument('--precision', choices=['fp32', 'bf16'], default='fp32',
                        help='bf16 also times OpenVINO bf16 and torch bf16 autocast, where the CPU has bf16 '
                             'units (never counted as the fastest exact form)')
    parser.add_argument('--ort-optimization', choices=['disable', 'basic', 'extended', 'all'], default='all',
                        help='ONNX Runtime graph optimisation level')
    parser.add_argument('--ov-hint', choices=['LATENCY', 'THROUGHPUT'], default='LATENCY',
                        help='OpenVINO performance hint')
    parser.add_argument('--ov-streams', type=int, help='OpenVINO NUM_STREAMS (default: from the hint)')
    parser.add_argument('--no-speed', action='store_true', help='params and MACs only')
    parser.add_argument('--train-step', nargs='+', default=[], metavar='CONFIG',
                        help='also time one training step of these detector/segmentor configs beside ResNet-50')
    parser.add_argument('--train-step-size', type=int, default=512)
    parser.add_argument('--train-step-repeats', type=int, default=3)
    parser.add_argument('--test-forward', nargs=2, action='append', default=[], metavar=('CONFIG', 'CHECKPOINT'),
                        help="time a detector's / segmentor's test-time forward in each --runtime beside "
                             'eager PyTorch (CPU; repeat the flag for more models)')
    parser.add_argument('--test-forward-images', type=int, default=8, metavar='N',
                        help='--test-forward: the first N val images (default 8)')
    parser.add_argument('--exported', metavar='DIR',
                        help='--test-forward: time the runtimes that tools/export.py wrote to DIR '
                             '(checked then) instead of exporting them again')
    parser.add_argument('--json', metavar='PATH', help="write every result to PATH ('-' for stdout)")
    args = parser.parse_args(argv)
    if args.devices is None:
        args.devices = ['cpu'] + (['cuda'] if torch.cuda.is_available() else [])
    for device in args.devices:
        if device.startswith('cuda') and not torch.cuda.is_available():
            raise UserError(f'--devices {device}: torch sees no CUDA GPU here')
    if args.clock == 'process' and any(device.startswith('cuda') for device in args.devices):
        raise UserError("--clock process measures CPU work only; use --devices cpu, or the wall clock for CUDA")
    if args.warmup < 0 or args.repeats < 1:
        raise UserError('--warmup must be >= 0 and --repeats >= 1')
    if args.test_forward_images < 1:
        raise UserError('--test-forward-images must be >= 1')
    if args.exported and len(args.test_forward) != 1:
        raise UserError('--exported DIR goes with one --test-forward CONFIG CHECKPOINT (the one exported to DIR)')
    if args.no_models and args.models:
        raise UserError('--no-models takes no --models')
    if args.precision == 'bf16':
        from mm_efficient_backbones.backbones.export import cpu_has_bf16
        if not cpu_has_bf16():
            raise UserError('--precision bf16 is unavailable here: this CPU has no bf16 units (amx_bf16 or '
                            'avx512_bf16 in /proc/cpuinfo); fp32 is timed by default')
    return args


def run(args) -> None:
    names = [] if args.no_models else benchmarking.select_models(args.models)
    options = SpeedOptions.of(args)
    sizes = [benchmarking.size_row(name) for name in names]
    if sizes:
        print_size_table(sizes)
    speeds = []
    if not args.no_speed:
        for device in args.devices:
            for name in names:
                speeds += benchmarking.benchmark_speed(name, torch.device(device), args.shapes, options)
    steps = []
    if args.train_step:
        from mm_efficient_backbones.mm_common.train_step import train_step_cost
        for config in args.train_step:
            steps += train_step_cost(config, args.devices[-1], args.train_step_size, args.train_step_repeats,
                                     args.clock)
    forwards = []
    if args.test_forward:
        from mm_efficient_backbones.mm_common.deploy import benchmark_test_forward
        for config, checkpoint in args.test_forward:
            forwards.append(benchmark_test_forward(config, checkpoint, args.runtime, args.test_forward_images,
                                                   args.repeats, exported_dir=args.exported))
            print_test_forward(forwards[-1])
    if args.json:
        result = dict(mac_counter=MAC_COUNTER, torch=torch.__version__, threads=torch.get_num_threads(),
                      sizes=sizes, speed=speeds, train_steps=steps, test_forward=forwards)
        text = json.dumps(result, indent=1)
        if args.json == '-':
            print(text)
        else:
            with open(args.json, 'w') as out:
                out.write(text + '\n')


def main(argv=None) -> int:
    return exit_code_of(lambda: run(parse_args(argv)), prog=PROG)


if __name__ == '__main__':
    sys.exit(main())
