"""The README's model-zoo table, generated from the zoo (``backbones/weights/zoo.py``) and the
benchmark's size rows (params and MACs of the deploy form at 224x224).

    python scripts/zoo_table.py                       # sizes only: what the README shows
    python scripts/zoo_table.py --speed               # with the CPU speed column (slow)

Paste the output over the README's model table; tests/test_zoo.py checks that every row
still agrees with the zoo.
"""
import argparse
import os.path as osp
import sys
from typing import List

import timm
import torch

from mm_efficient_backbones.backbones.benchmarking import (MAC_COUNTER, SpeedOptions, benchmark_speed,
                                                           format_number, select_models, size_row)
from mm_efficient_backbones.backbones.errors import exit_code_of
from mm_efficient_backbones.backbones.weights import zoo


def imagenet_weights(name: str) -> str:
    """The model-zoo cell saying where ``name``'s ImageNet weights come from."""
    entry = zoo.model(name)
    if entry is None:
        return '-'
    if entry.weights in ('release', 'timm'):
        tags = [f'`{tag}`' for tag in timm.list_pretrained(f'{name}.*')]
        where = 'release' if entry.weights == 'release' else 'timm'
        return f"{where}: {', '.join(tags)}" if tags else 'none published'
    return {'gdrive': 'Google Drive, convert', 'none': 'none published'}[entry.weights]


def configs_cell(name: str) -> str:
    """Every config of ``name`` in the table, with its method and published result."""
    entry = zoo.model(name)
    if entry is None or not entry.configs:
        return '-'
    return '<br>'.join(f'`{osp.basename(cfg.path)}` ({cfg.method}): {cfg.published_text()}'
                       for cfg in entry.configs)


def markdown_table(size_rows: List[dict], speed_rows: List[dict]) -> str:
    """The README's model-zoo table: sizes, published metrics, configs, and CPU speed if run."""
    speed = {}
    for row in speed_rows:
        if (row['batch'], row['height'], row['width']) == (8, 224, 224) and row['device'] == 'cpu':
            speed[row['model']] = row
    head = ['model', 'params (M)', 'MACs (G)', 'paper params / MACs', 'difference', 'ImageNet weights',
            'configs (method): published']
    if speed:
        first = next(iter(speed.values()))
        clock = ', CPU time' if first['clock'] == 'process' else ''
        head += [f"CPU img/s, {first['threads']} thread(s){clock}: train → deploy (bs 8, 224²)"]
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    for row in size_rows:
        paper = row['published']
        diffs = ', '.join(f'{format_number(row[k], "+.2f")} {unit}' for k, unit in (('params_diff', 'M'), ('macs_diff', 'G'))
                          if row[k] is not None)
        cells = [row['model'], f"{row['params_m']:.2f}", f"{row['macs_g']:.2f}",
                 f"{paper.get('params') or '-'} M / {paper.get('macs') or '-'} G" if paper else '-',
                 f"{diffs} ({row['difference_note']})" if diffs else '-',
                 imagenet_weights(row['model']), configs_cell(row['model'])]
        if speed:
            s = speed.get(row['model'])
            cells.append(f"{s['train']['img_per_s']['median']:.3g} → {s['deploy']['img_per_s']['median']:.3g} "
                         f"({s['deploy_speedup']:.2f}×)" if s else '-')
        lines.append('| ' + ' | '.join(cells) + ' |')
    lines.append(f'\nParams and MACs of the deploy form at 224×224, MACs counted by `{MAC_COUNTER}`.')
    return '\n'.join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--models', nargs='+', metavar='NAME_OR_GLOB', help='default: every model of this project')
    parser.add_argument('--speed', action='store_true', help='add CPU throughput at 8x224x224 (train -> deploy)')

    def run():
        args = parser.parse_args(argv)
        names = select_models(args.models)
        sizes = [size_row(name) for name in names]
        speeds = [row for name in names for row in benchmark_speed(name, torch.device('cpu'), [(8, 224, 224)],
                                                                 SpeedOptions())] if args.speed else []
        print(markdown_table(sizes, speeds))
    return exit_code_of(run, prog='zoo_table')


if __name__ == '__main__':
    sys.exit(main())
