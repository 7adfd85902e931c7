"""Training form vs deploy forms of a reparameterisable backbone: latency and size.

    python tools/benchmark_deploy.py --models repnext_m3 --size 512 --batch-size 1
    python tools/benchmark_deploy.py --models repnext_m0 repnext_m5 --threads 2 --rounds 7

Each form (``train``: multi-branch, BN live; ``deploy``: level 1; ``single``: level 2,
one 11x11 conv per ChunkConv) is timed on the same input in interleaved rounds, so
that load from other processes hits every form alike; the median per form is
reported, with its speed-up over the training form. Params and MACs (224x224, as in
the papers) are counted by backbones/benchmarking/counting.py, as the benchmark counts them.
"""
import argparse
import copy
import inspect
import statistics
import sys

import torch

import timm

from mm_efficient_backbones import backbones  # noqa: F401  (registers the models)
from mm_efficient_backbones.backbones.benchmarking import time_interleaved
from mm_efficient_backbones.backbones.benchmarking.counting import count_macs, count_params
from mm_efficient_backbones.backbones.errors import UserError, exit_code_of

FORMS = {
    'train': lambda model: model,
    'deploy': lambda model: model.switch_to_deploy(),
    'single': lambda model: model.switch_to_deploy(single_kernel=True),
}


def forward_runs(model, x: torch.Tensor, runs: int):
    """A runner of ``runs`` inference forwards (timed together, as one round)."""
    def run():
        with torch.inference_mode():
            for _ in range(runs):
                model(x)
    return run


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--models', nargs='+', default=['repnext_m3'])
    parser.add_argument('--size', type=int, default=512)
    parser.add_argument('--batch-size', type=int, default=1)
    parser.add_argument('--threads', type=int, default=torch.get_num_threads())
    parser.add_argument('--rounds', type=int, default=5, help='interleaved timing rounds per form')
    parser.add_argument('--runs', type=int, default=3, help='forward passes per round')
    args = parser.parse_args(argv)
    return exit_code_of(lambda: benchmark_forms(args))


def benchmark_forms(args) -> None:
    unknown = [m for m in args.models if m not in timm.list_models()]
    if unknown:
        raise UserError(f'unknown model(s) {", ".join(unknown)}; e.g. repnext_m3')
    for option in ('size', 'batch_size', 'threads', 'rounds', 'runs'):
        if getattr(args, option) < 1:
            raise UserError(f'--{option.replace("_", "-")} must be at least 1, got {getattr(args, option)}')
    torch.set_num_threads(args.threads)
    x = torch.randn(args.batch_size, 3, args.size, args.size)
    for name in args.models:
        base = timm.create_model(name, num_classes=0).eval()  # trunk only: what dense prediction runs
        if 'single_kernel' not in inspect.signature(getattr(base, 'switch_to_deploy', lambda: None)).parameters:
            raise UserError(f'{name} has no single-kernel deploy form to compare; give a RepNeXt, e.g. repnext_m3')
        models = {form: make(copy.deepcopy(base)).eval() for form, make in FORMS.items()}
        runners = {form: forward_runs(model, x, args.runs) for form, model in models.items()}
        times = time_interleaved(runners, torch.device('cpu'), warmup=1, repeats=args.rounds)
        train_ms = 1e3 * statistics.median(times['train']) / args.runs
        for form, model in models.items():
            ms = 1e3 * statistics.median(times[form]) / args.runs
            print(f'{name} {form:<6}: {count_params(model) / 1e6:6.2f}M params, '
                  f'{count_macs(model, 224) / 1e9:5.2f}G MACs @224, {ms:8.1f} ms/batch '
                  f'@{args.size} bs{args.batch_size} ({args.threads} threads), '
                  f'x{train_ms / ms:.2f} vs train', flush=True)


if __name__ == '__main__':
    sys.exit(main())
