"""Atomic checkpoint saving for mmengine's runner: a run-time fix, applied by tools/train.py.

mmengine 0.10.7 writes a checkpoint straight to its final name, so a process killed in the
middle of a save leaves a truncated ``epoch_N.pth`` that looks like a checkpoint. Here every
checkpoint goes to a temporary file in the same folder, is flushed to disk (fsync) and then
renamed over the final name (atomic on POSIX), and the folder entry is synced. CheckpointHook
also deletes the checkpoint that ``max_keep_ckpts`` (or a new best) retires *before* it saves the
new one; here that deletion waits until the new file is complete. A kill at any moment therefore
leaves either the old set of files or the new one, plus at most a temporary file that the next
``--resume`` removes.
"""
import io
import os
import re
import time
from typing import Callable

import torch

from mm_efficient_backbones.backbones.weights.files import atomic_write

# Test hook: a save whose file name is this value writes half of the file, then stalls, so that
# a test can kill the process inside a save.
STALL_ENV = 'MM_EFFICIENT_BACKBONES_STALL_SAVE'
# .<name>.tmp-<pid>: hidden, and not *.pth, so that nothing takes it for a checkpoint.
TEMP_NAME = re.compile(r'^\.(?P<name>.+)\.tmp-(?P<pid>\d+)$')


def temp_path(path: str) -> str:
    folder, name = os.path.split(path)
    return os.path.join(folder, f'.{name}.tmp-{os.getpid()}')


def _write_then_stall(checkpoint, f) -> None:
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    data = buffer.getvalue()
    f.write(data[:len(data) // 2])
    f.flush()
    while True:  # until the test kills the process
        time.sleep(1)


def atomic_torch_save(checkpoint, path: str) -> None:
    """``torch.save(checkpoint, path)`` such that ``path`` is never seen half-written: through
    the package's one atomic write, with a temporary name that ``--resume`` recognises."""
    with atomic_write(path, temp=temp_path(path)) as temp:
        with open(temp, 'wb') as f:
            if os.environ.get(STALL_ENV) == os.path.basename(path):
                _write_then_stall(checkpoint, f)
            torch.save(checkpoint, f)


def _atomic_save_checkpoint(original: Callable) -> Callable:
    def save_checkpoint(checkpoint, filename, file_client_args=None, backend_args=None):
        # Only local files can be renamed atomically; other backends (petrel, pavi...) keep
        # mmengine's own path.
        if '://' in str(filename) or file_client_args is not None or backend_args:
            return original(checkpoint, filename, file_client_args=file_client_args,
                            backend_args=backend_args)
        return atomic_torch_save(checkpoint, str(filename))
    save_checkpoint.atomic = True
    return save_checkpoint


def removing_after_saving(save: Callable) -> Callable:
    """A CheckpointHook save method whose deletions of retired checkpoints (``file_backend.remove``)
    run only once the save has succeeded."""
    def save_then_remove(hook, *args, **kwargs):
        backend, retired = hook.file_backend, []
        own = vars(backend)
        shadowed = own.get('remove')  # set when an outer save (a new best) is deferring too
        backend.remove = retired.append  # shadows the method on this instance only
        try:
            save(hook, *args, **kwargs)
        finally:
            if shadowed is None:
                del backend.remove
            else:
                backend.remove = shadowed
        for path in retired:
            backend.remove(path)  # the real method, or the outer save's list
    save_then_remove.atomic = True
    return save_then_remove


def make_checkpoint_saving_atomic() -> None:
    """Route mmengine's checkpoint saving (the runner's and CheckpointHook's) through
    :func:`atomic_torch_save`, and make CheckpointHook delete retired checkpoints after saving
    the new one (idempotent)."""
    import mmengine.runner as runner_package
    import mmengine.runner.checkpoint as checkpoint_module
    import mmengine.runner.runner as runner_module
    from mmengine.hooks import CheckpointHook
    if getattr(checkpoint_module.save_checkpoint, 'atomic', False):
        return
    atomic = _atomic_save_checkpoint(checkpoint_module.save_checkpoint)
    # runner.py imported the name; CheckpointHook imports it from the package when it publishes.
    for module in (checkpoint_module, runner_module, runner_package):
        module.save_checkpoint = atomic
    for name in ('_save_checkpoint_with_step', '_save_best_checkpoint'):
        setattr(CheckpointHook, name, removing_after_saving(getattr(CheckpointHook, name)))


def remove_stale_temp_files(folder: str) -> list:
    """Remove the temporary files that killed saves left in ``folder``; return their paths."""
    removed = []
    if not os.path.isdir(folder):
        return removed
    for name in os.listdir(folder):
        match = TEMP_NAME.match(name)
        if match and not _is_running(int(match.group('pid'))):
            path = os.path.join(folder, name)
            os.remove(path)
            removed.append(path)
    return removed


def _is_running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
