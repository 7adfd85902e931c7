"""Files the package writes: the one atomic write, and a file's sha256 (no mm imports).

Every file the package writes (converted and reparameterised checkpoints, downloads into the
hub cache, mmengine's checkpoints through ``mm_common.atomic_checkpoint``) goes through
:func:`atomic_write`: a reader sees the old file or the complete new one, never a part.
"""
import contextlib
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Iterator, Optional

__all__ = ['atomic_write', 'sha256_of', 'sync_folder']

HASH_CHUNK = 4 << 20


def sha256_of(path) -> str:
    """The file's sha256 (hex), read in chunks."""
    digest, buffer = hashlib.sha256(), bytearray(HASH_CHUNK)
    view = memoryview(buffer)
    with open(path, 'rb', buffering=0) as f:
        while size := f.readinto(buffer):
            digest.update(view[:size])
    return digest.hexdigest()


def sync_folder(folder) -> None:
    """Make a rename in ``folder`` durable (its entry), where the OS allows it."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write(path, temp: Optional[Path] = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` for the block to write. When the block succeeds,
    the file is synced to disk and renamed over ``path`` (atomic on POSIX), and the rename
    synced; whatever stops the block (an error, a failed check, Ctrl-C) removes the
    temporary file and leaves ``path`` as it was.

    ``temp`` names the temporary file (default: a fresh hidden name in ``path``'s folder,
    created with the mode a new file of the process gets).
    """
    path = Path(path)
    if temp is None:
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.name}.', suffix='.tmp')
        os.close(fd)
        temp = Path(name)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temp, 0o666 & ~umask)  # mkstemp makes it private
    temp = Path(temp)
    try:
        yield temp
        with open(temp, 'rb') as written:
            os.fsync(written.fileno())
        os.replace(temp, path)
    finally:
        if temp.exists():
            temp.unlink()
    sync_folder(path.parent)
