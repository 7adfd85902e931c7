"""Launching as a cluster user does: the dist scripts check their input once, before
torchrun starts, and say what is wrong in one line; the slurm scripts drive srun (a
stand-in on PATH here that checks its arguments and runs one local process)."""
import os
import socket
import subprocess
import sys

import pytest

from conftest import ROOT
from test_mm import SEG_DEMO, demo_options

# A stand-in for slurm's srun: records its arguments, checks the launch options mmdet users
# pass, then runs the command as the single task of a one-node step.
FAKE_SRUN = r'''#!/usr/bin/env bash
printf '%s\n' "$@" > "$SRUN_RECORD"
while [[ $# -gt 0 && $1 == -* ]]; do
  case $1 in
    -p) shift 2 ;;
    --job-name=*|--gres=gpu:*|--ntasks=*|--ntasks-per-node=*|--cpus-per-task=*|--kill-on-bad-exit=1) shift ;;
    --quotatype=*) shift ;;
    *) echo "srun: unrecognized option '$1'" >&2; exit 1 ;;
  esac
done
export SLURM_PROCID=0 SLURM_LOCALID=0 SLURM_NTASKS=1 SLURM_NODELIST=localhost
exec "$@"
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def run_script(*args, env_extra=None, timeout=600):
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHON': sys.executable, **(env_extra or {})}
    env.pop('PYTHONWARNINGS', None)
    return subprocess.run(['bash', *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def no_torchrun(tmp_path):
    """PYTHON for the scripts: the real interpreter, except that starting torchrun is recorded and fails."""
    wrapper = tmp_path / 'python'
    marker = tmp_path / 'torchrun-started'
    wrapper.write_text(f'#!/usr/bin/env bash\n'
                       f'if [[ "$1 $2" == "-m torch.distributed.run" ]]; then touch {marker}; exit 99; fi\n'
                       f'exec {sys.executable} "$@"\n')
    wrapper.chmod(0o755)
    return {'PYTHON': str(wrapper)}, marker


@pytest.mark.parametrize('script, args, message', [
    ('tools/dist_train.sh', ['configs/recnext_m3_coco.py', '2'],
     'error: train data root not found: data/coco/ (see README "Training on COCO and ADE20K" for the layout, '
     'or pass --cfg-options train_dataloader.dataset.data_root=PATH)'),
    ('tools/dist_train.sh', ['configs/nope.py', '2'], 'error: config not found: configs/nope.py'),
    ('tools/dist_train.sh', ['configs/recnext_m3_coco.py', 'two'],
     "error: GPUS must be a positive number of processes, got 'two'"),
    ('tools/dist_test.sh', [SEG_DEMO, '/no/such.pth', '2', '--cfg-options', 'test_dataloader.dataset.data_root=.'],
     'error: checkpoint not found: /no/such.pth (given as CHECKPOINT)'),
])
def test_dist_scripts_check_input_once_before_torchrun(script, args, message, no_torchrun):
    env, marker = no_torchrun
    result = run_script(script, *args, env_extra=env)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.splitlines() == [message]  # one line: no traceback, no warnings
    assert not marker.exists()


def test_slurm_train_and_test_through_srun(demo_data, tmp_path):
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    (bin_dir / 'srun').write_text(FAKE_SRUN)
    (bin_dir / 'srun').chmod(0o755)
    record = tmp_path / 'srun-args'
    env = {'PATH': f'{bin_dir}:{os.environ["PATH"]}', 'SRUN_RECORD': str(record), 'GPUS': '1',
           'GPUS_PER_NODE': '1', 'CPUS_PER_TASK': '2', 'SRUN_ARGS': '--quotatype=auto',
           'MASTER_PORT': str(free_port())}
    work = tmp_path / 'work'
    result = run_script('tools/slurm_train.sh', 'gpu-partition', 'recnext-demo', SEG_DEMO, str(work),
                        *demo_options(demo_data, 'seg', 'train_cfg.max_iters=1', 'train_cfg.val_interval=100',
                                      'default_hooks.checkpoint.interval=1'), env_extra=env)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert 'pkg_resources' not in result.stderr
    args = record.read_text().splitlines()
    assert args[:8] == ['-p', 'gpu-partition', '--job-name=recnext-demo', '--gres=gpu:1', '--ntasks=1',
                        '--ntasks-per-node=1', '--cpus-per-task=2', '--kill-on-bad-exit=1']
    assert args[8] == '--quotatype=auto'
    assert args[9:17] == [sys.executable, '-u', str(ROOT / 'tools/train.py'), SEG_DEMO, '--work-dir', str(work),
                          '--launcher', 'slurm']
    log = next(work.glob('*/*.log')).read_text()
    assert 'launch: distributed on CPU with gloo (rank 0/1)' in log
    assert (work / 'iter_1.pth').is_file()

    result = run_script('tools/slurm_test.sh', 'gpu-partition', 'recnext-demo-test', SEG_DEMO,
                        str(work / 'iter_1.pth'), '--work-dir', str(work),
                        *demo_options(demo_data, 'seg', 'test_dataloader.dataset.indices=2'), env_extra=env)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert 'mIoU=' in result.stdout
    assert record.read_text().splitlines()[9:16] == [sys.executable, '-u', str(ROOT / 'tools/test.py'), SEG_DEMO,
                                                     str(work / 'iter_1.pth'), '--launcher', 'slurm']


def test_slurm_launcher_outside_a_job_is_one_line(monkeypatch):
    import torch
    from mmengine.config import Config
    from mm_efficient_backbones.mm_common.runtime import UserError, configure_launch
    if torch.cuda.is_available():
        pytest.skip("on GPUs mmengine's own slurm launcher runs")
    for key in [k for k in os.environ if k.startswith('SLURM_')]:
        monkeypatch.delenv(key)
    with pytest.raises(UserError, match=r'^--launcher slurm outside a slurm job step'):
        configure_launch(Config(dict(model=dict())), 'slurm')
