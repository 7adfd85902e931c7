"""Issue 22, items 1-4: the loading paths the checkpoint pipeline now covers.

1. Oriented1D's ``Wrapper(conv)`` layout, in backbone files (init_cfg) and in their mmdet 2.x /
   mmseg 0.x detector and segmentor files (the legacy loader), theta included;
2. a backbone file that only partly fits is refused in one line, naming the cause;
3. a deploy-form RepNeXt detector loading a training-form detector checkpoint the way
   mmengine's ``Runner.load_checkpoint`` does collapses the backbone weights as they load;
4. ``init_cfg`` ``prefix`` as mmengine spells it, with or without the dot.
"""
import copy
import importlib.util
import logging
import math

import pytest
import torch

from conftest import ROOT, set_reference_weights
from test_convert import one_thread  # noqa: F401 (autouse: the models here are tiny)
from mm_efficient_backbones.backbones import (CheckpointError, ConvNeXt1DBackbone, RecNeXtBackbone,
                                              RepNeXtBackbone, ReXNetBackbone)
from mm_efficient_backbones.backbones.models.layers.oriented_conv import OrientedConv1d

needs_mmdet = pytest.mark.skipif(importlib.util.find_spec('mmdet') is None, reason='mmdet is not installed')




def features(model, x):
    with torch.no_grad():
        return model.eval()(x)


def assert_same_features(a, b, x):
    for got, want in zip(features(a, x), features(b, x), strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


def relative_error(want, got) -> float:
    return max(((a - b).abs().max() / a.abs().max()).item() for a, b in zip(want, got))


# ---- 1. Oriented1D's Wrapper(conv) layout -------------------------------------------------
def oriented1d_source(variant: str) -> ConvNeXt1DBackbone:
    """A demo-width backbone with random weights and angles other than the default ones, so
    that a theta that is not loaded changes the output."""
    source = set_reference_weights(ConvNeXt1DBackbone('demo', variant=variant), seed=5)
    with torch.no_grad():
        for module in source.modules():
            if isinstance(module, OrientedConv1d):
                module.theta.copy_((module.theta + math.pi / 8) % math.pi)
    return source.eval()


def in_wrapper_layout(state_dict: dict) -> dict:
    """Oriented1D's mmdet/mmseg layout: every oriented conv of the stages and the stem's
    first one wrapped, ``…dwconv.conv.weight`` / ``.bias`` / ``.theta``."""
    wrapped = {}
    for key, value in state_dict.items():
        module, _, name = key.rpartition('.')
        is_oriented = (module.startswith('stages.') and module.rsplit('.', 1)[-1] in ('dwconv', 'dwconv1', 'dwconv2')
                       and (name == 'theta' or f'{module}.theta' in state_dict))
        if is_oriented or module == 'downsample_layers.0.dw1':
            key = f'{module}.conv.{name}'
        wrapped[key] = value
    return wrapped


@pytest.mark.parametrize('variant', ['1d', '1dpp', '2dpp'])
def test_wrapper_layout_backbone_file_loads_through_init_cfg(variant, tmp_path):
    source = oriented1d_source(variant)
    file_state = in_wrapper_layout(source.state_dict())
    thetas = [k for k in file_state if k.endswith('.conv.theta')]
    assert thetas and ('downsample_layers.0.dw1.conv.theta' in file_state) == variant.startswith('1d')
    torch.save({'state_dict': file_state}, tmp_path / 'oriented1d_backbone.pth')

    backbone = ConvNeXt1DBackbone('demo', variant=variant, init_cfg=dict(
        type='Pretrained', checkpoint=str(tmp_path / 'oriented1d_backbone.pth')))
    fresh_thetas = {k: v.clone() for k, v in backbone.state_dict().items() if k.endswith('theta')}
    backbone.init_weights()
    loaded = backbone.state_dict()
    for key, value in source.state_dict().items():
        assert torch.equal(loaded[key], value), key
    assert any(not torch.equal(fresh_thetas[k], loaded[k]) for k in fresh_thetas)  # theta came from the file
    assert_same_features(backbone, source, torch.randn(1, 3, 61, 75))


@pytest.mark.parametrize('library, version', [('mmdet', '2.28.2'), ('mmseg', '0.30.0')])
def test_wrapper_layout_legacy_detector_file_is_renamed(library, version):
    pytest.importorskip('mmengine')
    from mm_efficient_backbones.mm_common.legacy import convert_legacy_checkpoint
    source = oriented1d_source('1dpp')
    state = {f'backbone.{k}': v for k, v in in_wrapper_layout(source.state_dict()).items()}
    wrapped = sum('.conv.' in k for k in state)
    state['neck.lateral_convs.0.conv.weight'] = torch.randn(8, 16, 1, 1)  # a head key named .conv.: kept
    checkpoint = {'meta': {f'{library}_version': version}, 'state_dict': state}
    mapped = convert_legacy_checkpoint(checkpoint)
    assert f'renamed {wrapped} of {len(state)} state_dict keys' in mapped[-1]
    assert "Oriented1D's Wrapper(conv) keys unwrapped" in mapped[-1]
    renamed = checkpoint['state_dict']
    assert 'neck.lateral_convs.0.conv.weight' in renamed
    backbone = ConvNeXt1DBackbone('demo', variant='1dpp')
    backbone.load_state_dict({k[len('backbone.'):]: v for k, v in renamed.items() if k.startswith('backbone.')},
                             strict=True)
    assert_same_features(backbone, source, torch.randn(1, 3, 45, 53))


# ---- 2. a partial backbone file fails in one line ---------------------------------------------
def one_line_error(backbone, path, match):
    before = copy.deepcopy(backbone.state_dict())
    with pytest.raises(CheckpointError, match=match) as raised:
        backbone.load_pretrained(str(path))
    assert '\n' not in str(raised.value)
    after = backbone.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # nothing half-loaded
    return str(raised.value)


def test_deploy_form_file_into_a_training_form_backbone_names_the_cause(tmp_path):
    deployed = set_reference_weights(RepNeXtBackbone('m0')).switch_to_deploy()
    torch.save({'state_dict': deployed.state_dict()}, tmp_path / 'repnext_m0_backbone_deploy.pth')
    one_line_error(RepNeXtBackbone('m0'), tmp_path / 'repnext_m0_backbone_deploy.pth',
                   r'^\S+deploy\.pth: \d+ RepNeXt-m0 tensors are missing from the checkpoint \(e\.g\. .*\); '
                   r'\d+ checkpoint tensors are not in the RepNeXt-m0 .*: '
                   r'this file is a deploy-form RepNeXt: set deploy=True$')
    # The level-2 form into a level-1 deploy backbone, and back.
    level2 = set_reference_weights(RepNeXtBackbone('m0', deploy=True, single_kernel=True))
    torch.save({'state_dict': level2.state_dict()}, tmp_path / 'level2.pth')
    one_line_error(RepNeXtBackbone('m0', deploy=True), tmp_path / 'level2.pth',
                   r'this file is a single-kernel deploy-form \(level 2\) RepNeXt: '
                   r'set deploy=True, single_kernel=True$')
    torch.save({'state_dict': deployed.state_dict()}, tmp_path / 'level1.pth')
    one_line_error(RepNeXtBackbone('m0', deploy=True, single_kernel=True), tmp_path / 'level1.pth',
                   r'this file is a deploy-form RepNeXt: set single_kernel=False$')


def test_any_missing_backbone_tensor_fails(tmp_path):
    state = set_reference_weights(RecNeXtBackbone('m0')).state_dict()
    del state['stages.2.blocks.3.norm.weight']
    torch.save({'model': state}, tmp_path / 'cut.pth')
    one_line_error(RecNeXtBackbone('m0'), tmp_path / 'cut.pth',
                   r'cut\.pth: 1 RecNeXt-m0 tensors are missing from the checkpoint '
                   r'\(e\.g\. stages\.2\.blocks\.3\.norm\.weight\); is it a checkpoint of another RecNeXt arch\?$')
    state = set_reference_weights(RecNeXtBackbone('m0')).state_dict()
    state['stages.0.extra.weight'] = torch.zeros(3)
    torch.save({'model': state}, tmp_path / 'extra.pth')
    one_line_error(RecNeXtBackbone('m0'), tmp_path / 'extra.pth',
                   r'1 checkpoint tensors are not in the RecNeXt-m0 \(e\.g\. stages\.0\.extra\.weight\)')


# ---- 3. a deploy-form RepNeXt detector, a training-form detector checkpoint ----------------------
def build_detector(deploy: bool):
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    from mm_efficient_backbones import detection  # noqa: F401
    from mmdet.registry import MODELS
    cfg = Config.fromfile(str(ROOT / 'configs/demo/repnext_m0_demo_coco.py'))
    init_default_scope(cfg.default_scope)
    cfg.model.backbone.update(deploy=deploy, init_cfg=None)
    return MODELS.build(cfg.model)


@needs_mmdet
def test_deploy_detector_collapses_a_training_form_checkpoint_as_it_loads(tmp_path, caplog):
    from mmengine.runner import load_checkpoint  # what Runner.load_checkpoint runs, hooks aside
    trained = set_reference_weights(build_detector(deploy=False), seed=3).eval()
    torch.save({'meta': dict(epoch=12), 'state_dict': trained.state_dict()}, tmp_path / 'epoch_12.pth')
    deployed = build_detector(deploy=True)
    assert deployed.backbone.fused
    mismatch_log = logging.getLogger('test_loading_seams')  # where mmengine reports a partial load
    with caplog.at_level(logging.WARNING, logger=mismatch_log.name):
        load_checkpoint(deployed, str(tmp_path / 'epoch_12.pth'), map_location='cpu', strict=False,
                        logger=mismatch_log)
    assert not [r for r in caplog.records if r.name == mismatch_log.name]
    # (The same capture does see a partial load: the neck left out.)
    torch.save({'state_dict': {k: v for k, v in trained.state_dict().items() if not k.startswith('neck.')}},
               tmp_path / 'no_neck.pth')
    with caplog.at_level(logging.WARNING, logger=mismatch_log.name):
        load_checkpoint(build_detector(deploy=True), str(tmp_path / 'no_neck.pth'), map_location='cpu',
                        strict=False, logger=mismatch_log)
    assert any('missing keys in source state_dict: neck.' in r.getMessage() for r in caplog.records)
    assert deployed.backbone.fused and 'backbone.stages.1.downsample.token_mixer.conv_s.weight' in deployed.state_dict()
    x = torch.randn(1, 3, 67, 93)
    with torch.no_grad():
        want, got = trained.extract_feat(x), deployed.eval().extract_feat(x)
    assert relative_error(want, got) < 1e-4
    # strict loading too; and the reverse (a deploy-form checkpoint into a training-form
    # detector) is refused in one line.
    load_checkpoint(build_detector(deploy=True), str(tmp_path / 'epoch_12.pth'), map_location='cpu', strict=True)
    torch.save({'state_dict': deployed.state_dict()}, tmp_path / 'deploy.pth')
    with pytest.raises(CheckpointError, match=r'^the backbone\.\* weights do not fit RepNeXt-m0 \(training-form\): '
                                              r'this file is a deploy-form RepNeXt: set deploy=True$'):
        load_checkpoint(build_detector(deploy=False), str(tmp_path / 'deploy.pth'), map_location='cpu')


def test_deploy_backbone_takes_training_weights_on_its_device_frozen_as_configured():
    trained = set_reference_weights(RepNeXtBackbone('m0'))
    deployed = RepNeXtBackbone('m0', deploy=True, frozen_stages=1).eval()
    deployed.load_state_dict(trained.state_dict(), strict=True)
    assert deployed.fused and not any(p.requires_grad for p in deployed.stages[0].parameters())
    x = torch.randn(1, 3, 64, 64)
    assert relative_error(features(trained, x), features(deployed, x)) < 1e-4


# ---- 4. prefix, as mmengine spells it ---------------------------------------------------------
FAMILIES = {
    'RecNeXt': lambda: RecNeXtBackbone('m0'),
    'RepNeXt': lambda: RepNeXtBackbone('m0'),
    'RepNeXt-deploy': lambda: RepNeXtBackbone('m0', deploy=True),
    'ReXNet': lambda: ReXNetBackbone('lite_1.0'),
    'ConvNeXt1D': lambda: ConvNeXt1DBackbone('demo', variant='1dpp'),
}


@pytest.mark.parametrize('family', FAMILIES)
def test_prefix_with_or_without_the_dot_on_a_detector_file(family, tmp_path):
    # The file holds the training form in every case: a deploy backbone collapses it.
    source = set_reference_weights(RepNeXtBackbone('m0') if family == 'RepNeXt-deploy' else FAMILIES[family]())
    detector = {f'backbone.{k}': v for k, v in source.state_dict().items()}
    detector['neck.fpn_convs.0.conv.weight'] = torch.randn(4, 4, 3, 3)
    torch.save({'meta': {}, 'state_dict': detector}, tmp_path / 'detector.pth')
    x = torch.randn(1, 3, 64, 64)
    for prefix in ('backbone', 'backbone.', None):
        backbone = FAMILIES[family]()
        backbone.init_cfg = dict(type='Pretrained', checkpoint=str(tmp_path / 'detector.pth'), prefix=prefix)
        backbone.init_weights()
        assert relative_error(features(source, x), features(backbone, x)) < 1e-4, prefix


def test_prefix_on_a_backbone_file_whose_keys_all_carry_it(tmp_path):
    source = set_reference_weights(RecNeXtBackbone('m0'))
    torch.save({f'backbone.{k}': v for k, v in source.state_dict().items()}, tmp_path / 'prefixed.pth')
    backbone = RecNeXtBackbone('m0')
    assert backbone.load_pretrained(str(tmp_path / 'prefixed.pth'), prefix='backbone.')['prefix'] == 'backbone.'
    assert_same_features(backbone, source, torch.randn(1, 3, 64, 64))
    with pytest.raises(CheckpointError, match=r"prefixed\.pth: no key starts with the prefix 'model\.backbone\.'"):
        RecNeXtBackbone('m0').load_pretrained(str(tmp_path / 'prefixed.pth'), prefix='model.backbone')
