"""The one checkpoint pipeline (backbones/weights/pipeline.py): init_cfg and the converter load the
same weights from a raw release of every family; the model table's targets; the pipeline
tools are thin (the layering itself: tests/test_architecture.py)."""
import ast
import re

import pytest
import timm
import torch

from conftest import ROOT, set_reference_weights
from test_convert import one_thread  # noqa: F401 (autouse: the models here are tiny)
from mm_efficient_backbones.backbones import MODEL_TO_BACKBONE, BackboneTarget, ConvNeXt1DBackbone, RecNeXtBackbone
from mm_efficient_backbones.backbones.weights.pipeline import Report, convert_checkpoint

# One model per family; ConvNeXt-1D's classifier kernels are larger than its backbone's.
RELEASES = ['recnext_m0', 'repnext_m0', 'rexnet_100', 'convnext_tiny_1d']




class Steps(Report):
    def start(self, steps):
        self.planned, self.finished = list(steps), []

    def done(self, step, message):
        self.finished.append(step)


@pytest.mark.parametrize('model', RELEASES)
def test_init_cfg_and_the_converter_load_the_same_weights_from_a_raw_release(model, tmp_path):
    release = tmp_path / f'{model}.pth'
    torch.save({'model': set_reference_weights(timm.create_model(model)).state_dict(), 'epoch': 300}, release)
    target = MODEL_TO_BACKBONE[model]
    steps = Steps()
    converted = convert_checkpoint(model, release, tmp_path / 'out', MODEL_TO_BACKBONE, report=steps)
    assert steps.finished == steps.planned == ['load', 'unwrap', 'drop', 'map', 'crop', 'write']
    written = torch.load(converted.path, weights_only=True)['state_dict']

    backbone = target.build(init_cfg=dict(type='Pretrained', checkpoint=str(release)))
    backbone.init_weights()
    loaded = backbone.state_dict()
    assert list(loaded) == list(written)
    for key, value in written.items():  # ConvNeXt's output norms too: both at their (fixed) init
        assert torch.equal(loaded[key], value), key
    assert (converted.cropped > 0) == model.startswith('convnext_')


def test_backbone_target_is_the_pair_plus_the_options():
    assert MODEL_TO_BACKBONE['recnext_a3'] == (RecNeXtBackbone, 'a3')
    target = MODEL_TO_BACKBONE['convnext_tiny_2dpp']
    backbone_cls, arch = target
    assert (backbone_cls, arch, target.options) == (ConvNeXt1DBackbone, 'tiny', dict(variant='2dpp'))
    assert target != (ConvNeXt1DBackbone, 'tiny')
    assert target == BackboneTarget(ConvNeXt1DBackbone, 'tiny', variant='2dpp')
    with torch.device('meta'):
        assert target.build(out_indices=(3,)).variant == '2dpp'


def module_imports(path):
    """The modules ``path`` imports at module level, as absolute names."""
    package = 'mm_efficient_backbones.' + '.'.join(path.relative_to(ROOT).with_suffix('').parts[:-1])
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom):
            base = node.module or ''
            if node.level:  # from .x import y, inside package a.b: a.b.x
                parts = package.split('.')
                base = '.'.join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            names.add(base)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


@pytest.mark.parametrize('tool', ['convert_to_backbone_weights', 'reparameterize'])
def test_pipeline_tools_are_thin(tool):
    path = ROOT / 'tools' / f'{tool}.py'
    assert not any(re.match(r'mm_efficient_backbones\.tools\b', m) for m in module_imports(path))
    assert 'torch' not in module_imports(path)  # the work is in backbones/, not here
    tree = ast.parse(path.read_text())
    main = next(node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == 'main')
    assert 'exit_code_of' in ast.unparse(main)
