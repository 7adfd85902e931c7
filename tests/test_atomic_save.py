"""Atomic checkpoints (mm_common.atomic_checkpoint): a kill inside a save leaves the old set of
files, and ``--resume`` continues from the last complete checkpoint."""
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import ROOT
from test_mm import SEG_DEMO, demo_options, scalars

from mm_efficient_backbones.mm_common.atomic_checkpoint import (STALL_ENV, atomic_torch_save,  # noqa: E402
                                                                make_checkpoint_saving_atomic,
                                                                remove_stale_temp_files, removing_after_saving,
                                                                temp_path)


def test_atomic_save_writes_the_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / 'epoch_1.pth'
    path.write_bytes(b'the previous checkpoint')
    atomic_torch_save({'state_dict': {'w': torch.arange(3.0)}}, str(path))
    assert os.listdir(tmp_path) == ['epoch_1.pth']
    torch.testing.assert_close(torch.load(path)['state_dict']['w'], torch.arange(3.0))


def test_a_failed_save_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / 'epoch_1.pth'
    path.write_bytes(b'the previous checkpoint')
    with pytest.raises(Exception):
        atomic_torch_save({'not picklable': lambda: None}, str(path))
    assert os.listdir(tmp_path) == ['epoch_1.pth']
    assert path.read_bytes() == b'the previous checkpoint'


def test_mmengine_saves_through_the_atomic_writer(tmp_path, monkeypatch):
    import mmengine.runner as runner_package
    import mmengine.runner.checkpoint as checkpoint_module
    import mmengine.runner.runner as runner_module
    from mmengine.hooks import CheckpointHook
    for module in (checkpoint_module, runner_module, runner_package):
        monkeypatch.setattr(module, 'save_checkpoint', module.save_checkpoint)  # undone after the test
    for name in ('_save_checkpoint_with_step', '_save_best_checkpoint'):
        monkeypatch.setattr(CheckpointHook, name, getattr(CheckpointHook, name))
    make_checkpoint_saving_atomic()
    make_checkpoint_saving_atomic()  # idempotent
    assert runner_module.save_checkpoint is runner_package.save_checkpoint is checkpoint_module.save_checkpoint
    assert runner_module.save_checkpoint.atomic
    written = []
    monkeypatch.setattr('mm_efficient_backbones.mm_common.atomic_checkpoint.os.replace',
                        lambda src, dst: written.append((os.path.basename(src), os.path.basename(dst)))
                        or os.rename(src, dst))
    runner_module.save_checkpoint({'meta': {}}, str(tmp_path / 'iter_2.pth'))
    assert written == [(f'.iter_2.pth.tmp-{os.getpid()}', 'iter_2.pth')]
    assert torch.load(tmp_path / 'iter_2.pth') == {'meta': {}}


class Backend:
    def __init__(self):
        self.removed = []

    def remove(self, path):
        self.removed.append(path)


class Hook:
    def __init__(self):
        self.file_backend = Backend()


def test_retired_checkpoints_are_deleted_only_after_the_new_one_is_saved():
    def save(hook, fail=False):
        before = list(hook.file_backend.removed)
        hook.file_backend.remove('iter_2.pth')  # what max_keep_ckpts does before saving
        assert hook.file_backend.removed == before  # not yet
        if fail:
            raise OSError('disk full')
    hook = Hook()
    with pytest.raises(OSError):
        removing_after_saving(save)(hook, fail=True)
    assert hook.file_backend.removed == [] and 'remove' not in vars(hook.file_backend)
    removing_after_saving(save)(hook)
    assert hook.file_backend.removed == ['iter_2.pth']

    def save_best(hook):  # a new best retires the old best, then saves the step checkpoint too
        hook.file_backend.remove('best_iter_2.pth')
        removing_after_saving(save)(hook)
        assert hook.file_backend.removed == []  # the inner save's deletion waits for the outer one
    hook = Hook()
    removing_after_saving(save_best)(hook)
    assert hook.file_backend.removed == ['best_iter_2.pth', 'iter_2.pth']
    assert 'remove' not in vars(hook.file_backend)


def test_stale_temp_files_of_dead_processes_are_removed(tmp_path):
    dead = subprocess.run([sys.executable, '-c', 'import os; print(os.getpid())'], capture_output=True,
                          text=True).stdout.strip()
    stale = tmp_path / f'.iter_4.pth.tmp-{dead}'
    stale.write_bytes(b'half')
    ours = tmp_path / os.path.basename(temp_path(str(tmp_path / 'iter_6.pth')))
    ours.write_bytes(b'being written')
    assert remove_stale_temp_files(str(tmp_path)) == [str(stale)]
    assert sorted(os.listdir(tmp_path)) == [ours.name]


def wait_for(predicate, process, timeout=600):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        assert process.poll() is None, 'training ended before the stalled save'
        time.sleep(0.2)
    raise AssertionError('timed out waiting for the stalled save')


def test_kill_inside_a_save_then_resume_finishes_with_the_metric(demo_data, tmp_path):
    """SIGKILL while iter_4.pth is being written: iter_2.pth and last_checkpoint stay as they were;
    a damaged iter_3.pth (an interrupted copy) is passed over with one warning; --resume
    continues from iter 2 and logs the demo's mIoU."""
    work = tmp_path / 'work'
    options = demo_options(demo_data, 'seg', 'train_cfg.max_iters=4', 'train_cfg.val_interval=4',
                           'default_hooks.checkpoint.interval=2', 'default_hooks.logger.interval=1',
                           'val_dataloader.dataset.indices=4')
    command = [sys.executable, 'tools/train.py', SEG_DEMO, '--work-dir', str(work), *options]
    env = dict(os.environ, OMP_NUM_THREADS='1', **{STALL_ENV: 'iter_4.pth'})
    with open(tmp_path / 'killed.log', 'w') as log:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: any(p.name.startswith('.iter_4.pth.tmp-') and p.stat().st_size > 0
                                 for p in work.glob('.*')), process)
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait()
    assert process.returncode == -signal.SIGKILL
    assert not (work / 'iter_4.pth').exists()  # never a truncated file under the final name
    assert (work / 'last_checkpoint').read_text().strip() == str(work / 'iter_2.pth')
    assert torch.load(work / 'iter_2.pth', weights_only=False)['meta']['iter'] == 2
    (work / 'iter_3.pth').write_bytes((work / 'iter_2.pth').read_bytes()[:1000])
    (work / 'last_checkpoint').write_text(str(work / 'iter_3.pth'))

    result = subprocess.run([sys.executable, 'tools/train.py', SEG_DEMO, '--work-dir', str(work), '--resume',
                             *options], cwd=ROOT, env=dict(os.environ, OMP_NUM_THREADS='1'),
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    warnings = [line for line in result.stderr.splitlines() if line.startswith('warning:')]
    assert warnings[0].startswith('warning: removed ') and '.iter_4.pth.tmp-' in warnings[0]
    assert warnings[1] == (f'warning: passing over a checkpoint that cannot be resumed: {work}/iter_3.pth is a '
                           'damaged torch checkpoint (cut short? its zip archive is incomplete); '
                           'use another checkpoint')
    assert len(warnings) == 2
    log = sorted(work.glob('*/*.log'))[-1].read_text()
    assert 'resumed epoch: 0, iter: 2' in log
    records = scalars(work)
    assert [r['iter'] for r in records if 'loss' in r] == [3, 4]
    assert any('mIoU' in r for r in records)
    assert (work / 'last_checkpoint').read_text().strip() == str(work / 'iter_4.pth')
    assert torch.load(work / 'iter_4.pth', weights_only=False)['meta']['iter'] == 4
    assert not [p.name for p in work.glob('.*.tmp-*')]
