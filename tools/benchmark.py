"""Measure the backbones: parameters, MACs, throughput and peak memory.

    python tools/benchmark.py                          # all RecNeXt-M and -A, 224x224, CPU
    python tools/benchmark.py --models recnext_m3 --device cuda --batch-size 64 --amp
    python tools/benchmark.py --markdown               # the README's model table

MACs are counted by torch's FlopCounterMode (multiply-accumulates of convs and linear
layers, i.e. FLOPs / 2) on the deploy form (BN folded, heads merged), the form the
papers report; parameters are given for both forms.
"""
import argparse
import os.path as osp
import sys
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout

import timm  # noqa: E402

import backbones  # noqa: E402,F401  (registers the models)

# Params (M) and MACs (G) at 224x224 as published, for comparison in the table.
PUBLISHED = {
    'recnext_m0': (2.5, 0.4), 'recnext_m1': (5.2, 0.9), 'recnext_m2': (6.8, 1.2),
    'recnext_m3': (8.2, 1.4), 'recnext_m4': (14.1, 2.4), 'recnext_m5': (22.9, 4.7),
    'recnext_a0': (2.8, 0.4), 'recnext_a1': (5.9, 0.9), 'recnext_a2': (7.9, 1.2),
    'recnext_a3': (9.0, 1.4), 'recnext_a4': (15.8, 2.4), 'recnext_a5': (25.7, 4.7),
}


def count_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model, size: int) -> int:
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(torch.randn(1, 3, size, size))
    return counter.get_total_flops() // 2


def throughput(model, size: int, batch: int, device: str, amp: bool, seconds: float):
    """Images/s of the eval forward, after warm-up; and peak GPU memory in MiB."""
    model = model.to(device).eval()
    x = torch.randn(batch, 3, size, size, device=device)
    autocast = torch.autocast(device_type=device.split(':')[0], dtype=torch.float16 if 'cuda' in device else torch.bfloat16, enabled=amp)
    sync = torch.cuda.synchronize if 'cuda' in device else (lambda: None)
    if 'cuda' in device:
        torch.cuda.reset_peak_memory_stats()
    with torch.inference_mode(), autocast:
        for _ in range(3):
            model(x)
        sync()
        runs, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            model(x)
            runs += 1
        sync()
        elapsed = time.perf_counter() - start
    memory = torch.cuda.max_memory_allocated() / 2 ** 20 if 'cuda' in device else float('nan')
    return runs * batch / elapsed, memory


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--models', nargs='+', default=list(PUBLISHED))
    parser.add_argument('--size', type=int, default=224)
    parser.add_argument('--batch-size', type=int, default=16)
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--amp', action='store_true', help='fp16 autocast on CUDA, bf16 on CPU')
    parser.add_argument('--seconds', type=float, default=3.0, help='timing window per model')
    parser.add_argument('--no-speed', action='store_true', help='params and MACs only')
    parser.add_argument('--markdown', action='store_true', help='print a markdown table')
    args = parser.parse_args(argv)
    unknown = [m for m in args.models if m not in timm.list_models()]
    if unknown:
        print(f'error: unknown model(s) {", ".join(unknown)}; e.g. {", ".join(PUBLISHED)}', file=sys.stderr)
        return 2
    if args.device.startswith('cuda') and not torch.cuda.is_available():
        print('error: --device cuda given but torch sees no CUDA GPU', file=sys.stderr)
        return 2

    rows = []
    for name in args.models:
        model = timm.create_model(name).eval()
        train_params = count_params(model)
        model.fuse()
        row = dict(model=name, params_m=count_params(model) / 1e6, train_params_m=train_params / 1e6,
                   macs_g=count_macs(model, args.size) / 1e9, published=PUBLISHED.get(name))
        if not args.no_speed:
            row['img_per_s'], row['peak_mib'] = throughput(
                model, args.size, args.batch_size, args.device, args.amp, args.seconds)
        rows.append(row)
        if not args.markdown:
            speed = (f", {row['img_per_s']:.0f} img/s, peak {row['peak_mib']:.0f} MiB"
                     if 'img_per_s' in row else '')
            print(f"{name}: {row['params_m']:.2f}M params deploy ({row['train_params_m']:.2f}M train), "
                  f"{row['macs_g']:.2f}G MACs @{args.size}{speed}", flush=True)
    if args.markdown:
        speed_head = f' | img/s ({args.device}, bs {args.batch_size}{", amp" if args.amp else ""})'
        print('| model | params (M) | MACs (G) | paper params / MACs' + ('' if args.no_speed else speed_head) + ' |')
        print('|---|---|---|---' + ('' if args.no_speed else '|---') + '|')
        for row in rows:
            paper = '{} M / {} G'.format(*row['published']) if row['published'] else '-'
            speed = '' if args.no_speed else f" | {row['img_per_s']:.0f}"
            print(f"| {row['model']} | {row['params_m']:.2f} | {row['macs_g']:.2f} | {paper}{speed} |")
    return 0


if __name__ == '__main__':
    sys.exit(main())
