import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / 'shared'
REFERENCE_KEYS = SHARED / 'data' / 'reference_keys'
sys.path.insert(0, str(ROOT))
# Keep each test process to the machine's cores without oversubscription.
os.environ.setdefault('OMP_NUM_THREADS', str(os.cpu_count() or 1))


def reference_shapes(name: str) -> dict:
    """{key: shape} from shared/data/reference_keys/<name>.txt (first line is a header)."""
    path = REFERENCE_KEYS / f'{name}.txt'
    if not path.is_file():
        pytest.skip(f'reference keys not found: {path}')
    shapes = {}
    for line in path.read_text().splitlines()[1:]:
        key, shape = line.split('\t')
        shapes[key] = tuple(int(s) for s in shape.strip('()').split(',') if s.strip())
    return shapes


@pytest.fixture(scope='session')
def demo_data(tmp_path_factory):
    """The demo sets, generated once per session into a temp folder."""
    from tools.make_demo_data import main as make_demo_data
    out = tmp_path_factory.mktemp('demo')
    make_demo_data(['--out', str(out), '--seed', '0'])
    return out
