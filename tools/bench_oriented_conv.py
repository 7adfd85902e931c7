"""Time the oriented 1D depthwise conv against its two yardsticks (forward + backward).

    python tools/bench_oriented_conv.py                       # C=96, 56x56, batch 8, K=31, CPU
    python tools/bench_oriented_conv.py --device cuda --repeats 20
    python tools/bench_oriented_conv.py --channels 384 --size 28 --skip-dense

Compares, on one input of the same shape:
* ``oriented``: backbones.models.layers.oriented_conv.OrientedConv1d (8 directions, one per channel group);
* ``conv1xK``: a plain nn.Conv2d depthwise 1xK conv (the cost floor of a 1D kernel);
* ``dense KxK``: the naive emulation, the taps painted into a dense KxK depthwise kernel.
Each is timed as the median of ``--repeats`` runs, interleaved so that load from other
processes hits all three alike. Targets: oriented <= 3x conv1xK and >= 5x faster than dense.
"""
import argparse
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

from mm_efficient_backbones.backbones.models.layers.oriented_conv import OrientedConv1d, tap_offsets


class DenseEmulation(nn.Module):
    """The oriented conv as one dense KxK depthwise conv (the taps painted into the square)."""

    def __init__(self, oriented: OrientedConv1d):
        super().__init__()
        self.oriented, self.pad = oriented, oriented.kernel_size // 2

    def forward(self, x):
        o, k = self.oriented, self.oriented.kernel_size
        dy, dx = tap_offsets(o.theta, k)
        positions = ((dy + self.pad) * k + dx + self.pad).to(x.device)
        dense = o.weight.new_zeros(o.channels, k * k).scatter_add(1, positions, o.weight.reshape(o.channels, k))
        return F.conv2d(x, dense.view(o.channels, 1, k, k), o.bias, o.stride, self.pad, 1, o.channels)


def time_fwd_bwd(module: nn.Module, x: torch.Tensor) -> float:
    """Seconds for one forward + backward (input and parameter gradients)."""
    sync = torch.cuda.synchronize if x.is_cuda else (lambda: None)
    x.grad = None
    module.zero_grad(set_to_none=True)
    sync()
    start = time.perf_counter()
    module(x).sum().backward()
    sync()
    return time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--channels', type=int, default=96)
    parser.add_argument('--size', type=int, default=56)
    parser.add_argument('--batch-size', type=int, default=8)
    parser.add_argument('--kernel-size', type=int, default=31)
    parser.add_argument('--stride', type=int, default=1)
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--dtype', default='float32', choices=['float32', 'bfloat16', 'float16'])
    parser.add_argument('--channels-last', action='store_true')
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--skip-dense', action='store_true', help='the dense KxK emulation is slow on CPU')
    args = parser.parse_args(argv)
    if args.kernel_size % 2 == 0:
        parser.error(f'--kernel-size must be odd, got {args.kernel_size}')
    if args.device.startswith('cuda') and not torch.cuda.is_available():
        parser.error('--device cuda given but torch sees no CUDA GPU')

    torch.manual_seed(0)
    dtype = getattr(torch, args.dtype)
    k, c = args.kernel_size, args.channels
    oriented = OrientedConv1d(c, k, stride=args.stride)
    candidates = {
        'oriented': oriented,
        f'conv1x{k}': nn.Conv2d(c, c, (1, k), args.stride, (0, k // 2), groups=c),
    }
    if not args.skip_dense:
        candidates[f'dense {k}x{k}'] = DenseEmulation(oriented)
    for module in candidates.values():
        module.to(args.device, dtype)
    x = torch.randn(args.batch_size, c, args.size, args.size, device=args.device, dtype=dtype)
    if args.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)

    times = {name: [] for name in candidates}
    for name, module in candidates.items():  # warm-up (and oriented's channel plan)
        time_fwd_bwd(module, x)
    for _ in range(args.repeats):
        for name, module in candidates.items():
            times[name].append(time_fwd_bwd(module, x))
    medians = {name: statistics.median(t) * 1e3 for name, t in times.items()}

    print(f'forward+backward, N={args.batch_size} C={c} {args.size}x{args.size} K={k} stride={args.stride} '
          f'{args.dtype}{" channels_last" if args.channels_last else ""} on {args.device} '
          f'({torch.get_num_threads()} threads), median of {args.repeats}:')
    base = medians['oriented']
    for name, ms in medians.items():
        print(f'  {name:<12} {ms:9.1f} ms   oriented / this = {base / ms:6.2f}')
    plain = base / medians[f'conv1x{k}']
    verdict = [f'oriented costs {plain:.2f}x conv1x{k} (target <= 3: {"met" if plain <= 3 else "MISSED"})']
    if not args.skip_dense:
        dense = medians[f'dense {k}x{k}'] / base
        verdict.append(f'{dense:.1f}x faster than dense {k}x{k} (target >= 5: {"met" if dense >= 5 else "MISSED"})')
    print('; '.join(verdict))
    return 0


if __name__ == '__main__':
    sys.exit(main())
