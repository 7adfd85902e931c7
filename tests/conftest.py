import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / 'shared'
REFERENCE_KEYS = SHARED / 'data' / 'reference_keys'
# Keep each test process to its share of the machine's cores (pytest-xdist runs one worker per
# core), without oversubscription.
_WORKERS = int(os.environ.get('PYTEST_XDIST_WORKER_COUNT', '1'))
os.environ.setdefault('OMP_NUM_THREADS', str(max(1, (os.cpu_count() or 1) // _WORKERS)))


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
    from mm_efficient_backbones.tools.make_demo_data import main as make_demo_data
    out = tmp_path_factory.mktemp('demo')
    make_demo_data(['--out', str(out), '--seed', '0'])
    return out


REFERENCE_OUTPUTS = SHARED / 'data' / 'reference_outputs'


def load_script(name: str):
    """The module of ``scripts/<name>.py`` (research instruments, not installed with the package)."""
    import importlib.util
    module_name = f'scripts_{name}'
    if module_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(module_name, ROOT / 'scripts' / f'{name}.py')
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    return sys.modules[module_name]


def set_reference_weights(model, seed: int = 7):
    """Fill ``model``'s state the way reference_outputs/README.md says the authors' was filled."""
    import math

    import torch
    g = torch.Generator().manual_seed(seed)
    state = model.state_dict()
    for key in sorted(state):
        tensor = state[key]
        if not tensor.is_floating_point() or key.endswith('theta'):
            continue
        shape = tuple(tensor.shape)
        if key.endswith('running_var'):
            value = torch.rand(shape, generator=g, dtype=torch.float64) + 0.5
        elif len(shape) >= 2:
            fan_in = max(1, math.prod(shape[1:]))
            value = torch.randn(shape, generator=g, dtype=torch.float64) / math.sqrt(fan_in)
        elif key.endswith('weight'):
            value = 1 + 0.1 * torch.randn(shape, generator=g, dtype=torch.float64)
        else:
            value = 0.1 * torch.randn(shape, generator=g, dtype=torch.float64)
        with torch.no_grad():
            tensor.copy_(value)
    return model


def load_reference(name: str) -> dict:
    """reference_outputs/<name>.pt: inputs, outputs, keys, seed (skips if absent)."""
    import torch
    path = REFERENCE_OUTPUTS / f'{name}.pt'
    if not path.is_file():
        pytest.skip(f'reference outputs not found: {path}')
    return torch.load(path, weights_only=False)


def assert_matches_reference(model, reference: dict, tol: float = 1e-4):
    """Every reference input gives the reference logits within ``tol`` relative to the largest."""
    import torch
    model.eval()
    with torch.no_grad():
        for x, expected in zip(reference['inputs'], reference['outputs']):
            got = model(x)
            scale = expected.abs().max().item()
            error = (got - expected).abs().max().item() / scale
            assert got.shape == expected.shape and error <= tol, (tuple(x.shape), error)


def demo_cfg_options(demo_data, task) -> dict:
    """--cfg-options that point a demo config at the session's demo data."""
    if task == 'det':
        root = f'{demo_data}/coco/'
        return {'train_dataloader.dataset.data_root': root, 'val_dataloader.dataset.data_root': root,
                'test_dataloader.dataset.data_root': root,
                'val_evaluator.ann_file': f'{root}annotations/instances_val2017.json',
                'test_evaluator.ann_file': f'{root}annotations/instances_val2017.json'}
    root = f'{demo_data}/ade'
    return {'train_dataloader.dataset.data_root': root, 'val_dataloader.dataset.data_root': root,
            'test_dataloader.dataset.data_root': root}


def demo_config_file(demo_data, tmp_path, task) -> str:
    """The demo config pointed at the session's demo data, as a config file of its own."""
    from mmengine.config import Config
    cfg = Config.fromfile(str(ROOT / ('configs/demo/recnext_m0_demo_coco.py' if task == 'det' else 'configs/demo/recnext_m0_demo_ade.py')))
    cfg.merge_from_dict(demo_cfg_options(demo_data, task))
    path = tmp_path / f'{task}_demo.py'
    cfg.dump(str(path))
    return str(path)


def onnx_of(module, inputs, path, **kwargs) -> str:
    """``module`` exported by the TorchScript exporter at opset 11, as mmdeploy exports."""
    import torch
    torch.onnx.export(module, inputs, str(path), dynamo=False, opset_version=11, **kwargs)
    return str(path)
