"""Bad input across the command-line tools, table-driven: for each row, one ``error:`` line on
stderr, exit code 2, no traceback, and no output file left behind.

Rows marked ``process`` (the shell scripts, and a few Python tools as the issue tried them) run
as their own process from the repo root; the other Python rows run their tool's ``main`` one after
another in one process (tests/cli_batch.py), which saves a start-up per row. ``expect`` is the
part of the error line a row is about; rows of tools without one are held to the common rules."""
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import pytest
import torch

from conftest import ROOT
from test_mm import DET_DEMO, SEG_DEMO, demo_options


@pytest.fixture(scope='module')
def inputs(tmp_path_factory):
    """Bad (and a few good) files the rows point at."""
    from PIL import Image
    from mm_efficient_backbones.backbones import MM_BACKBONES
    tmp = tmp_path_factory.mktemp('bad_input')
    (tmp / 'text.pth').write_text('this is text, not weights\n')
    torch.save({'state_dict': {'backbone.w': torch.zeros(4096)}}, tmp / 'whole.pth')
    (tmp / 'truncated.pth').write_bytes((tmp / 'whole.pth').read_bytes()[:2000])
    torch.save({'state_dict': {'w': torch.zeros(2)}}, tmp / 'foreign.pth')  # no mmengine meta
    repnext = MM_BACKBONES['RepNeXt'](arch='m0').state_dict()
    torch.save({'state_dict': {f'backbone.{k}': v for k, v in repnext.items()}}, tmp / 'repnext_det.pth')
    Image.new('RGB', (64, 48), (200, 30, 30)).save(tmp / 'image.jpg')
    (tmp / 'not_an_image.jpg').write_text('no pixels here')
    (tmp / 'empty').mkdir()
    (tmp / 'a_file').write_text('not a folder')
    damaged_work = tmp / 'damaged_work'
    damaged_work.mkdir()
    (damaged_work / 'iter_2.pth').write_bytes((tmp / 'whole.pth').read_bytes()[:2000])
    return tmp


@dataclass
class Row:
    name: str
    tool: str                                # path under tools/ (a .sh runs with bash)
    args: Callable[[Path, Path, Path], Sequence[str]]  # (inputs, tmp_path, demo_data) -> arguments
    expect: Optional[str] = None             # a part of the error line
    outputs: Sequence[str] = ('out',)        # under tmp_path: must not exist afterwards
    process: bool = False                    # a process of its own (always for .sh)

    @property
    def in_batch(self) -> bool:
        return not (self.process or self.tool.endswith('.sh'))

    def available(self) -> bool:
        return (ROOT / 'tools' / self.tool).is_file()


def seg(data, *extra):
    return demo_options(data, 'seg', *extra)


ROWS = [
    # tools/train.py
    Row('train missing config', 'train.py', lambda i, t, d: ['configs/nope.py', '--work-dir', f'{t}/out'],
        'config not found: configs/nope.py'),
    Row('train bad cfg option', 'train.py', lambda i, t, d: [SEG_DEMO, '--work-dir', f'{t}/out',
                                                             *seg(d, 'model.backbone.arch=m9')],
        "unknown RecNeXt arch 'm9'"),
    Row('train resume text file', 'train.py', lambda i, t, d: [SEG_DEMO, '--work-dir', f'{t}/out', '--resume',
                                                               f'{i}/text.pth', *seg(d)],
        'text.pth is not a torch checkpoint'),
    Row('train resume cut short', 'train.py', lambda i, t, d: [SEG_DEMO, '--work-dir', f'{t}/out', '--resume',
                                                               f'{i}/truncated.pth', *seg(d)],
        'truncated.pth is a damaged torch checkpoint'),
    Row('train resume foreign file', 'train.py', lambda i, t, d: [SEG_DEMO, '--work-dir', f'{t}/out', '--resume',
                                                                  f'{i}/foreign.pth', *seg(d)],
        'foreign.pth holds no mmengine training state', process=True),
    Row('train resume missing file', 'train.py', lambda i, t, d: [SEG_DEMO, '--work-dir', f'{t}/out', '--resume',
                                                                  f'{t}/none.pth', *seg(d)],
        'checkpoint to resume not found'),
    Row('train resume auto, none readable', 'train.py',
        lambda i, t, d: [SEG_DEMO, '--work-dir', f'{i}/damaged_work', '--resume', *seg(d)],
        'damaged_work can be resumed (1 passed over'),
    Row('train load_from another family', 'train.py',
        lambda i, t, d: [SEG_DEMO, '--work-dir', f'{t}/out', *seg(d, f'load_from={i}/repnext_det.pth')],
        'holds a RepNeXt backbone but the config builds RecNeXt-m0'),
    # tools/test.py
    Row('test text checkpoint', 'test.py', lambda i, t, d: [SEG_DEMO, f'{i}/text.pth', '--work-dir', f'{t}/out',
                                                            '--out', f'{t}/out.pkl', *seg(d)],
        'text.pth is not a torch checkpoint', ('out', 'out.pkl'), process=True),
    Row('test text checkpoint, check only', 'test.py',
        lambda i, t, d: [SEG_DEMO, f'{i}/text.pth', '--check-only', *seg(d)], 'text.pth is not a torch checkpoint'),
    Row('test checkpoint of another family', 'test.py',
        lambda i, t, d: [SEG_DEMO, f'{i}/repnext_det.pth', '--work-dir', f'{t}/out', *seg(d)],
        'repnext_det.pth holds a RepNeXt backbone but the config builds RecNeXt-m0'),
    Row('test detector: checkpoint of another family', 'test.py',
        lambda i, t, d: [DET_DEMO, f'{i}/repnext_det.pth', '--work-dir', f'{t}/out', *demo_options(d, 'det')],
        'repnext_det.pth holds a RepNeXt backbone but the config builds RecNeXt-m0'),
    Row('test missing checkpoint', 'test.py', lambda i, t, d: [SEG_DEMO, f'{t}/none.pth', *seg(d)],
        'checkpoint not found'),
    Row('test --show-dir without a visualization hook', 'test.py',
        lambda i, t, d: [SEG_DEMO, f'{i}/text.pth', '--show-dir', f'{t}/out',
                         *seg(d, 'default_hooks.visualization=None')],
        '--show-dir needs default_hooks.visualization in the config'),
    Row('test --out not a pkl', 'test.py', lambda i, t, d: [SEG_DEMO, f'{i}/text.pth', '--out', f'{t}/out.txt',
                                                            *seg(d)],
        'give a .pkl file', ('out.txt',)),
    # tools/infer.py
    Row('infer text checkpoint', 'infer.py', lambda i, t, d: [SEG_DEMO, f'{i}/text.pth', f'{i}/image.jpg',
                                                              '--out-dir', f'{t}/out'],
        'text.pth is not a torch checkpoint'),
    Row('infer checkpoint of another family', 'infer.py',
        lambda i, t, d: [SEG_DEMO, f'{i}/repnext_det.pth', f'{i}/image.jpg', '--out-dir', f'{t}/out'],
        'holds a RepNeXt backbone'),
    Row('infer not an image', 'infer.py', lambda i, t, d: [SEG_DEMO, f'{i}/text.pth', f'{i}/not_an_image.jpg',
                                                           '--out-dir', f'{t}/out'],
        'not_an_image.jpg: not an image file'),
    Row('infer score threshold', 'infer.py', lambda i, t, d: [SEG_DEMO, f'{i}/text.pth', f'{i}/image.jpg',
                                                              '--score-thr', '2', '--out-dir', f'{t}/out'],
        '--score-thr 2.0 must be between 0 and 1'),
    # tools owned by others: held to the common rules (the lead runs them after merging)
    Row('reparameterize text checkpoint', 'reparameterize.py', lambda i, t, d: [f'{i}/text.pth', f'{t}/out']),
    Row('reparameterize missing checkpoint', 'reparameterize.py', lambda i, t, d: [f'{t}/none.pth', f'{t}/out']),
    Row('export text checkpoint', 'export.py', lambda i, t, d: [SEG_DEMO, f'{i}/text.pth', '--out', f'{t}/out']),
    Row('export missing config', 'export.py', lambda i, t, d: ['configs/nope.py', f'{i}/text.pth',
                                                               '--out', f'{t}/out']),
    Row('convert text checkpoint', 'convert_to_backbone_weights.py',
        lambda i, t, d: ['--model', 'recnext_m0', '--checkpoint', f'{i}/text.pth', '--output-dir', f'{t}/out']),
    Row('convert unknown model', 'convert_to_backbone_weights.py',
        lambda i, t, d: ['--model', 'nope_m0', '--checkpoint', f'{i}/whole.pth', '--output-dir', f'{t}/out']),
    Row('benchmark unknown model', 'benchmark.py', lambda i, t, d: ['--models', 'nope_m0', '--no-speed',
                                                                    '--json', f'{t}/out']),
    Row('benchmark --exported without --test-forward', 'benchmark.py',
        lambda i, t, d: ['--no-models', '--exported', f'{t}/out', '--json', f'{t}/out'],
        '--exported DIR goes with one --test-forward CONFIG CHECKPOINT'),
    Row('benchmark --test-forward missing config', 'benchmark.py',
        lambda i, t, d: ['--no-models', '--test-forward', 'configs/nope.py', f'{i}/text.pth', '--json', f'{t}/out'],
        'config not found: configs/nope.py'),
    # tools/log_results.py, tools/benchmark_deploy.py, tools/make_demo_data.py
    Row('log-results missing path', 'log_results.py', lambda i, t, d: [f'{t}/none'],
        'log-results: error: no such file or directory'),
    Row('log-results plot folder missing', 'log_results.py', lambda i, t, d: [f'{i}/empty', '--plot',
                                                                              f'{t}/out/curves.png'],
        'no such directory for --plot'),
    Row('benchmark_deploy unknown model', 'benchmark_deploy.py', lambda i, t, d: ['--models', 'nope_m0'],
        'unknown model(s) nope_m0'),
    Row('benchmark_deploy model without a deploy form', 'benchmark_deploy.py',
        lambda i, t, d: ['--models', 'recnext_m0', '--size', '32'], 'recnext_m0 has no single-kernel deploy form'),
    Row('make_demo_data into a file', 'make_demo_data.py', lambda i, t, d: ['--out', f'{i}/a_file/demo'],
        'cannot write the demo data to'),
    # tools/analysis
    Row('erf unknown model', 'analysis/erf.py', lambda i, t, d: ['--models', 'nope_m0', '--images', f'{i}/image.jpg',
                                                                 '--out', f'{t}/out.png'],
        "unknown model 'nope_m0'", ('out.png',)),
    Row('erf no images', 'analysis/erf.py', lambda i, t, d: ['--models', 'recnext_m0', '--images', f'{i}/empty',
                                                             '--out', f'{t}/out.png'],
        'no images', ('out.png',)),
    Row('erf stage out of range', 'analysis/erf.py',
        lambda i, t, d: ['--models', 'recnext_m0', '--images', f'{i}/image.jpg', '--stage', '9', '--size', '32',
                         '--out', f'{t}/out.png'],
        '--stage 9 is out of range', ('out.png',)),
    Row('feature_maps not an image', 'analysis/feature_maps.py',
        lambda i, t, d: ['recnext_m0', f'{i}/not_an_image.jpg', '--out', f'{t}/out.png'],
        'not an image file', ('out.png',)),
    Row('feature_maps missing checkpoint', 'analysis/feature_maps.py',
        lambda i, t, d: ['recnext_m0', f'{i}/image.jpg', '--checkpoint', f'{t}/none.pth', '--out', f'{t}/out.png'],
        'checkpoint not found', ('out.png',)),
    # tools/dist_train.sh: checked once before torchrun starts any process
    Row('dist_train.sh no arguments', 'dist_train.sh', lambda i, t, d: [], 'error: missing arguments; usage: '),
    Row('dist_train.sh zero processes', 'dist_train.sh', lambda i, t, d: [SEG_DEMO, '0'],
        "GPUS must be a positive number of processes, got '0'"),
    Row('dist_train.sh damaged resume', 'dist_train.sh',
        lambda i, t, d: [SEG_DEMO, '2', '--work-dir', f'{t}/out', '--resume', f'{i}/truncated.pth', *seg(d)],
        'truncated.pth is a damaged torch checkpoint'),
]


def row_folder(base: Path, row: Row) -> Path:
    folder = base / re.sub(r'\W+', '_', row.name)
    folder.mkdir(exist_ok=True)
    return folder


@pytest.fixture(scope='module')
def batch(inputs, demo_data, tmp_path_factory):
    """{row name: (result, its folder)} for every batched row, run in one process."""
    base = tmp_path_factory.mktemp('rows')
    rows = [row for row in ROWS if row.in_batch and row.available()]
    folders = [row_folder(base, row) for row in rows]
    commands = [[f'tools/{row.tool}', [str(a) for a in row.args(inputs, folder, demo_data)]]
                for row, folder in zip(rows, folders)]
    done = subprocess.run([sys.executable, str(ROOT / 'tests' / 'cli_batch.py')], input=json.dumps(commands),
                          cwd=ROOT, env=dict(os.environ, OMP_NUM_THREADS='1'), capture_output=True, text=True,
                          timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    return {row.name: (subprocess.CompletedProcess(row.tool, r['code'], r['stdout'], r['stderr']), folder)
            for row, r, folder in zip(rows, results, folders)}


def run_alone(row: Row, inputs: Path, folder: Path, demo_data: Path) -> subprocess.CompletedProcess:
    launcher = ['bash'] if row.tool.endswith('.sh') else [sys.executable]
    env = dict(os.environ, OMP_NUM_THREADS='1', PORT=str(29500 + os.getpid() % 1000))
    return subprocess.run([*launcher, str(ROOT / 'tools' / row.tool), *map(str, row.args(inputs, folder, demo_data))],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize('row', ROWS, ids=[row.name for row in ROWS])
def test_bad_input_is_one_error_line(row, inputs, demo_data, request, tmp_path):
    if row.tool == 'export.py' and not row.available():
        pytest.skip('tools/export.py is not on this branch yet')
    if row.in_batch:
        result, folder = request.getfixturevalue('batch')[row.name]
    else:
        result, folder = run_alone(row, inputs, tmp_path, demo_data), tmp_path
    output = result.stdout + result.stderr
    assert 'Traceback' not in output, output[-3000:]
    errors = [line for line in result.stderr.splitlines() if re.match(r'([\w.-]+: )?error: ', line)]
    assert len(errors) == 1, result.stderr[-3000:]
    assert result.returncode == 2, output[-3000:]
    if row.expect:
        assert row.expect in errors[0], errors[0]
    left = [name for name in row.outputs if (folder / name).exists()]
    assert not left, f'{row.tool} left {left} behind'
