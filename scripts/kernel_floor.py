"""A floor for what any deploy form of a model's kernels can gain, on this CPU.

    python scripts/kernel_floor.py --models recnext_m3 repnext_m3 --shapes 1x512x512 --repeats 9

Each conv and GELU of one forward of the training form is run as a bare op (its weight, no
bias, no activation) on every CPU kernel and layout we know (NCHW, NHWC, a GEMM for 1x1
convs, a depthwise conv for channel-doubling convs, oneDNN's blocked layout), and the
fastest is kept. Then, round by round, the training form, the deploy form and the floor
(every op once on its fastest kernel, times its calls) are timed in turn, so that all three
see the same machine load. Element-wise adds, resizes and layout changes count as free, so
no deploy form made of these kernels beats the floor: ``train / floor`` bounds its
speed-up. A research instrument (docs/measurements.md), not a user verb: it lives here, on
top of the library's benchmarking (``backbones.benchmarking``).
"""
import argparse
import collections
import json
import statistics
import sys
from typing import Callable, Dict, List

import torch
import torch.nn.functional as F
from torch import nn

from mm_efficient_backbones.backbones.benchmarking import (CLOCKS, SpeedOptions, both_forms, select_models,
                                                           time_interleaved)
from mm_efficient_backbones.backbones.errors import UserError, exit_code_of


# ---- a floor: the unavoidable work on its fastest kernel -------------------------------
def recorded_ops(model: nn.Module, x: torch.Tensor) -> collections.Counter:
    """{(module, input shape): calls} of the convs and GELUs in one forward of ``model``
    (the training form: its layers are called as modules, so hooks see them)."""
    calls = collections.Counter()

    def record(module, inputs):
        calls[module, tuple(inputs[0].shape)] += 1
    hooks = [module.register_forward_pre_hook(record) for module in model.modules()
             if isinstance(module, (nn.Conv2d, nn.GELU))]
    try:
        with torch.inference_mode():
            model(x)
    finally:
        for hook in hooks:
            hook.remove()
    return calls


def _to_blocked(x: torch.Tensor) -> torch.Tensor:
    """``x`` in oneDNN's blocked layout (nChw8c on AVX2), which only its opaque tensors hold:
    a conv of an mkldnn tensor returns one."""
    import torch.utils.mkldnn as mkldnn_utils
    identity = nn.Conv2d(x.shape[1], x.shape[1], 1).eval()
    with torch.no_grad():
        identity.weight.copy_(torch.eye(x.shape[1]).view_as(identity.weight))
        identity.bias.zero_()
    with torch.inference_mode():
        return mkldnn_utils.to_mkldnn(identity)(x.to_mkldnn())


def bare_kernels(module: nn.Module, x: torch.Tensor) -> Dict[str, Callable[[], object]]:
    """The op of one conv (its weight, no bias, no activation) or GELU on input ``x``, on each
    CPU kernel and layout we know. Every kernel computes the same values, in its own layout."""
    x_nhwc = x.contiguous(memory_format=torch.channels_last)
    if isinstance(module, nn.GELU):
        return {'GELU': lambda: F.gelu(x)}  # element-wise: the layout does not matter
    weight = module.weight.detach()
    shape = x.shape
    geometry = (module.stride, module.padding, module.dilation, module.groups)
    kernels = {'NCHW conv': lambda: F.conv2d(x, weight, None, *geometry),
               'NHWC conv': lambda: F.conv2d(x_nhwc, weight, None, *geometry)}
    if module.kernel_size == (1, 1) and module.stride == (1, 1) and module.groups == 1:
        rows = x_nhwc.permute(0, 2, 3, 1).reshape(-1, shape[1])
        columns = weight.flatten(1).t()
        kernels['GEMM'] = lambda: torch.mm(rows, columns)
    source, groups = x, module.groups  # what the blocked kernel convolves
    copies = module.out_channels // module.in_channels
    if module.groups == module.in_channels and copies > 1:
        # Several outputs per input channel: as a depthwise conv of the input repeated per output
        # (RecNeXt's deploy form does this; the repeat is a layout change, counted as free).
        repeated = x.repeat_interleave(copies, dim=1)
        repeated_nhwc = repeated.contiguous(memory_format=torch.channels_last)
        depthwise = geometry[:3] + (module.out_channels,)
        kernels['NHWC depthwise'] = lambda: F.conv2d(repeated_nhwc, weight, None, *depthwise)
        source, groups = repeated, module.out_channels
    if torch.backends.mkldnn.is_available() and isinstance(module.padding, tuple):
        blocked = _to_blocked(source)
        kernels['oneDNN blocked'] = lambda: torch.ops.mkldnn._convolution_pointwise(
            blocked, weight, None, list(module.padding), list(module.stride), list(module.dilation),
            groups, 'none', [], 'none')
    return kernels


def compute_floor(name: str, shapes, args: SpeedOptions) -> List[dict]:
    """How fast any deploy form built from these kernels could be at most.

    Each conv and GELU of one forward of the training form is run on each of
    :func:`bare_kernels`, and the fastest is kept. Then, round by round (``args.repeats``),
    the training form, the deploy form and the floor (every op once on its fastest kernel,
    times its calls) are timed in turn, so that all three see the same machine load.
    Element-wise adds, resizes and layout changes count as free, so no deploy form made of
    these kernels beats the floor: ``train / floor`` (median over rounds) bounds its speed-up.
    """
    train, deploy = both_forms(name)
    device, now = torch.device('cpu'), CLOCKS[args.clock]
    rows = []
    for batch, height, width in shapes:
        x = torch.randn(batch, 3, height, width)
        ops = []  # (part, calls, kernel name, kernel)
        for (module, shape), calls in recorded_ops(train, x).items():
            kernels = bare_kernels(module, torch.randn(shape))
            with torch.inference_mode():
                seconds = {kernel: statistics.median(found) for kernel, found in time_interleaved(
                    kernels, device, 1, 3, args.clock).items()}
            best = min(seconds, key=seconds.get)
            part = ('GELU' if isinstance(module, nn.GELU) else
                    '1x1 convs' if module.kernel_size == (1, 1) and module.groups == 1 else 'other convs')
            ops.append((part, calls, best, kernels[best]))
        rounds = collections.defaultdict(list)
        with torch.inference_mode():
            for round_index in range(args.warmup + args.repeats):
                timed = {}
                for form, model in (('train', train), ('deploy', deploy)):
                    start = now()
                    model(x)
                    timed[form] = now() - start
                parts = collections.defaultdict(float)
                for part, calls, _, kernel in ops:
                    start = now()
                    kernel()
                    parts[part] += calls * (now() - start)
                timed['floor'] = sum(parts.values())
                if round_index >= args.warmup:
                    for key, value in list(timed.items()) + list(parts.items()):
                        rounds[key].append(value)
                    rounds['bound'].append(timed['train'] / timed['floor'])
        ms = {key: 1e3 * statistics.median(values) for key, values in rounds.items() if key != 'bound'}
        chosen = collections.Counter()
        for _, calls, kernel_name, _ in ops:
            chosen[kernel_name] += calls
        parts = {part: ms[part] for part in ('1x1 convs', 'other convs', 'GELU') if part in ms}
        row = dict(model=name, batch=batch, height=height, width=width, threads=torch.get_num_threads(),
                   clock=args.clock, floor_ms=ms['floor'], floor_parts_ms=parts, fastest_kernels=dict(chosen),
                   train_ms=ms['train'], deploy_ms=ms['deploy'], deploy_speedup=ms['train'] / ms['deploy'],
                   speedup_bound=statistics.median(rounds['bound']), rounds=args.repeats)
        rows.append(row)
        print(f"{name} {batch}x{height}x{width} cpu {row['threads']}t: floor {row['floor_ms']:.0f} ms/batch ("
              + ', '.join(f'{part} {value:.0f}' for part, value in parts.items())
              + f"; kernels: {', '.join(f'{k} x{v}' for k, v in chosen.items())}) | "
              f"train {row['train_ms']:.0f} ms, deploy {row['deploy_ms']:.0f} ms ({row['deploy_speedup']:.2f}x) | "
              f"no deploy form of these kernels beats {row['speedup_bound']:.2f}x (medians of {args.repeats} "
              f"rounds)", flush=True)
    return rows


def parse_shape(text: str):
    try:
        batch, height, width = (int(v) for v in text.lower().split('x'))
        return batch, height, width
    except ValueError:
        raise argparse.ArgumentTypeError(f'shape {text!r}: use BATCHxHEIGHTxWIDTH, e.g. 1x512x512') from None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--models', nargs='+', metavar='NAME_OR_GLOB', help='default: every model of this project')
    parser.add_argument('--shapes', nargs='+', type=parse_shape, default=[(1, 512, 512)], metavar='BxHxW')
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--clock', choices=list(CLOCKS), default='wall')
    parser.add_argument('--json', metavar='PATH', help='write the rows to PATH')
    args = parser.parse_args(argv)

    def run():
        if args.warmup < 0 or args.repeats < 1:
            raise UserError('--warmup must be >= 0 and --repeats >= 1')
        options = SpeedOptions(warmup=args.warmup, repeats=args.repeats, clock=args.clock)
        rows = [row for name in select_models(args.models) for row in compute_floor(name, args.shapes, options)]
        if args.json:
            with open(args.json, 'w') as out:
                json.dump(rows, out, indent=1)
    return exit_code_of(run, prog='kernel_floor')


if __name__ == '__main__':
    sys.exit(main())
