"""ReXNet family: ReXNet-lite against clovaai's keys and outputs, clovaai's full ReXNetV1
layout through the key map into timm's rexnet_100, the converter on clovaai and timm
checkpoints, the backbone's channels/strides/freezing/deploy, and the generic timm adapter."""
import importlib.util
import math

import pytest
import timm
import torch

from conftest import (ROOT, assert_matches_reference, load_reference, reference_shapes,
                      set_reference_weights)

from mm_efficient_backbones import backbones  # noqa: F401  (registers rexnet_lite_* with timm)
from mm_efficient_backbones.backbones import (REXNET_ARCHS, BackboneConfigError, CheckpointError, MultiScaleBackbone,
                       ReXNetBackbone)
from mm_efficient_backbones.backbones.weights.checkpoint import split_keys
from mm_efficient_backbones.backbones.models.rexnet import clovaai_to_timm
from mm_efficient_backbones.backbones.models.timm_features import TimmFeaturesBackbone
from mm_efficient_backbones.tools.convert_to_backbone_weights import main as convert

LITE = {'100': '1.0', '130': '1.3', '150': '1.5', '200': '2.0'}
# arch -> stage channels at strides 4/8/16/32 (timm's feature_info; the README table).
CHANNELS = {
    '0.9': [36, 56, 117, 168], '2.2': [85, 134, 283, 406],
    '1.0': [38, 61, 128, 185], '1.3': [50, 79, 167, 240], '1.5': [58, 92, 193, 277],
    '2.0': [77, 122, 257, 370], '3.0': [116, 183, 386, 554],
    'r_1.0': [40, 64, 128, 184], 'r_1.3': [48, 80, 168, 240], 'r_1.5': [56, 96, 192, 280],
    'r_2.0': [80, 120, 256, 368], 'r_3.0': [112, 176, 384, 560],
    'lite_1.0': [40, 64, 128, 184], 'lite_1.3': [48, 80, 160, 232], 'lite_1.5': [56, 88, 192, 272],
    'lite_2.0': [80, 120, 248, 360],
}


class StateHolder:
    """A bare state_dict of given key -> shape, for set_reference_weights in clovaai's layout."""

    def __init__(self, shapes):
        self.tensors = {key: torch.zeros(shape, dtype=torch.int64 if key.endswith('num_batches_tracked')
                                         else torch.float32) for key, shape in shapes.items()}

    def state_dict(self):
        return self.tensors


def clovaai_weights(width: str):
    """The reference and clovaai-layout ReXNetV1(width_mult=width) weights filled by the shared procedure."""
    reference = load_reference(f'clovaai_rexnetv1_{width}')
    return reference, set_reference_weights(StateHolder(reference['keys'])).state_dict()


@pytest.fixture(scope='module')
def clovaai_100():
    return clovaai_weights('1.0')


def eval_features(model, x):
    with torch.no_grad():
        return model.eval()(x)


# ---- ReXNet-lite: our implementation against clovaai's ------------------------------------
@pytest.mark.parametrize('tag', LITE)
def test_lite_state_dict_equals_clovaai_keys(tag):
    with torch.device('meta'):
        model = timm.create_model(f'rexnet_lite_{tag}')
    shapes = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    assert shapes == reference_shapes(f'clovaai_rexnetv1_lite_{LITE[tag]}')


@pytest.mark.parametrize('tag', ['100', '150'])
def test_lite_reproduces_clovaai_outputs_unfused_and_fused(tag):
    reference = load_reference(f'rexnet_lite_{tag}')
    model = set_reference_weights(timm.create_model(f'rexnet_lite_{tag}'))
    assert_matches_reference(model, reference)
    assert_matches_reference(model.fuse(), reference)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())


# ---- the family takes over timm's names, keeping timm's weights and cfgs --------------------
def test_timm_names_build_our_rexnet_with_timms_pretrained_cfgs():
    from timm.models import rexnet as timm_rexnet
    from mm_efficient_backbones.backbones.models import registry
    from mm_efficient_backbones.backbones.models.rexnet import ReXNet
    assert registry.family_of_model('rexnet_100').type == 'ReXNet'
    for name in ('rexnet_100', 'rexnetr_200', 'rexnet_300'):
        assert type(timm.create_model(name, pretrained=False)) is ReXNet
        # timm's own tags, hub ids and preprocessing, as timm declares them
        theirs = timm_rexnet.default_cfgs[name]
        assert sorted(tag.split('.', 1)[1] for tag in timm.list_pretrained(f'{name}.*')) == sorted(
            tag for tag in theirs.tags if theirs.cfgs[tag].has_weights)
        cfg = timm.models.get_pretrained_cfg(name)
        assert cfg.hf_hub_id == f'timm/{name}.{theirs.tags[0]}' and cfg.crop_pct == theirs.cfgs[theirs.tags[0]].crop_pct
    assert timm.models.get_pretrained_cfg('rexnetr_200.sw_in12k').num_classes == 11821
    # every name taken over builds timm's own model, tensor for tensor (timm's factories are
    # still in timm's module, only no longer registered)
    taken = [name for name in registry.family('ReXNet').models if hasattr(timm_rexnet, name)]
    assert len(taken) == 10
    for name in taken:
        with torch.device('meta'):
            ours, theirs = timm.create_model(name), getattr(timm_rexnet, name)()
        assert type(theirs) is timm_rexnet.RexNet
        assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in theirs.state_dict().items()}


@pytest.mark.parametrize('layout', ['timm', 'clovaai'])
def test_pretrained_cfg_overlay_reads_a_file_in_either_layout(layout, clovaai_100, tmp_path):
    """timm's own loader reads timm's layout (timm's RexNet class, weights as timm publishes them)
    and clovaai's ReXNetV1 file through the family's checkpoint filter."""
    from timm.models import rexnet as timm_rexnet
    reference, clovaai_state = clovaai_100
    if layout == 'timm':
        theirs = timm_rexnet.RexNet(width_mult=1.0)  # timm's own class, BatchNormAct2d and all
        theirs.load_state_dict(clovaai_to_timm(clovaai_state), strict=True)
        saved = theirs.state_dict()
    else:
        saved = clovaai_state
    torch.save(saved, tmp_path / 'weights.pth')
    model = timm.create_model('rexnet_100', pretrained=True,
                              pretrained_cfg_overlay=dict(file=str(tmp_path / 'weights.pth')))
    assert_matches_reference(model, reference)


@pytest.mark.parametrize('width', LITE)
def test_pretrained_cfg_overlay_reads_a_clovaai_lite_file(width, tmp_path):
    with torch.device('meta'):
        shapes = {k: tuple(v.shape) for k, v in timm.create_model(f'rexnet_lite_{width}').state_dict().items()}
    state = set_reference_weights(StateHolder(shapes)).state_dict()
    torch.save(state, tmp_path / 'lite.pth')
    model = timm.create_model(f'rexnet_lite_{width}', pretrained=True,
                              pretrained_cfg_overlay=dict(file=str(tmp_path / 'lite.pth')))
    assert all(torch.equal(model.state_dict()[key], value) for key, value in state.items())


# ---- plain norms: SyncBN keeps every activation ------------------------------------------------
@pytest.mark.parametrize('build', [lambda: timm.create_model('rexnet_100'), lambda: ReXNetBackbone('1.0'),
                                   lambda: timm.create_model('rexnetr_100'), lambda: ReXNetBackbone('lite_1.0')],
                         ids=['classifier', 'backbone', 'classifier-r', 'backbone-lite'])
def test_mmengines_sync_batchnorm_conversion_keeps_the_outputs(build):
    """mmengine's convert_sync_batchnorm (what its Runner applies with sync_bn='torch') rebuilds
    every BN as a bare SyncBatchNorm: no norm of ours may hold an activation."""
    from mmengine.model import convert_sync_batchnorm
    from timm.layers import BatchNormAct2d
    torch.manual_seed(0)
    model = set_reference_weights(build()).eval()
    assert not any(isinstance(module, BatchNormAct2d) for module in model.modules())
    synced = convert_sync_batchnorm(build(), 'torch')
    assert any(isinstance(module, torch.nn.SyncBatchNorm) for module in synced.modules())
    synced.load_state_dict(model.state_dict(), strict=True)
    x = torch.randn(1, 3, 96, 128)
    for want, got in zip(*(out if isinstance(out, tuple) else (out,) for out in
                          (eval_features(model, x), eval_features(synced.eval(), x))), strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_no_family_builds_a_norm_with_an_activation_inside():
    """The other families' norms are plain too (checked on every model, shape-only builds)."""
    from timm.layers import BatchNormAct2d
    from mm_efficient_backbones.backbones.models import registry
    for record in registry.families():
        for name, entry in record.models.items():
            with torch.device('meta'):
                models = [timm.create_model(name), registry.backbone_target(name).build()]
            for model in models:
                assert not any(isinstance(m, BatchNormAct2d) or (
                    isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and len(list(m.children())))
                    for m in model.modules()), name


# ---- clovaai's full ReXNetV1 layout -> timm ----------------------------------------------------
def test_clovaai_weights_through_key_map_reproduce_clovaai_outputs_in_timm_rexnet_100(clovaai_100):
    reference, clovaai_state = clovaai_100
    model = timm.create_model('rexnet_100')
    model.load_state_dict(clovaai_to_timm(clovaai_state), strict=True)
    assert_matches_reference(model, reference)


@pytest.mark.parametrize('width, model, tensors, params', [
    ('0.9', 'rexnet_090', 413, 4_091_257), ('2.2', 'rexnet_220', 413, 19_485_308)])
def test_clovaai_weights_reproduce_clovaai_outputs_in_our_timm_widths(width, model, tensors, params):
    """rexnet_090 / rexnet_220 (timm's RexNet at the widths of clovaai's COCO results) hold
    clovaai's ReXNetV1(width_mult=w) tensor for tensor, and give its logits."""
    reference, clovaai_state = clovaai_weights(width)
    classifier = timm.create_model(model)
    assert len(classifier.state_dict()) == len(clovaai_state) == tensors
    assert sum(p.numel() for p in classifier.parameters()) == params
    classifier.load_state_dict(clovaai_to_timm(clovaai_state), strict=True)
    assert_matches_reference(classifier, reference)


@pytest.mark.parametrize('width, arch', [('0.9', '0.9'), ('2.2', '2.2')])
def test_clovaai_full_checkpoint_of_a_new_width_loads_through_init_cfg(tmp_path, width, arch):
    """A clovaai ReXNetV1 checkpoint (their layout, head and final conv included) fills the
    backbone completely, whose features are then timm's classifier's own levels."""
    _, clovaai_state = clovaai_weights(width)
    path = tmp_path / f'rexnetv1_{width}.pth'
    torch.save(clovaai_state, path)
    backbone = ReXNetBackbone(arch)
    result = backbone.load_pretrained(str(path))
    assert (result['missing'], result['unexpected']) == ([], [])
    classifier = timm.create_model(REXNET_ARCHS[arch].model)
    classifier.load_state_dict(clovaai_to_timm(clovaai_state))
    x = torch.randn(1, 3, 45, 61)
    for ours, theirs in zip(eval_features(backbone, x), timm_levels(classifier, x), strict=True):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=0)


@pytest.mark.parametrize('extra, message', [
    ('extra.weight', 'unexpected key in a clovaai ReXNet checkpoint: extra.weight'),
    ('features.4.out.0.weight', 'clovaai ReXNet block features.4 has 1 conv/BN layers; expected 4 or 6'),
])
def test_clovaai_key_map_rejects_other_layouts(extra, message):
    block = {f'features.3.out.{i}.weight': torch.zeros(1) for i in (0, 1, 3, 4)}
    with pytest.raises(CheckpointError, match=message):
        clovaai_to_timm({**block, extra: torch.zeros(1)})


def timm_levels(model, x):
    """timm's own stride 4..32 features of a classifier (its forward_intermediates)."""
    with torch.no_grad():
        return model.eval().forward_intermediates(x, indices=[1, 2, 3, 4], intermediates_only=True)


@pytest.mark.parametrize('arch, layout', [('1.0', 'clovaai'), ('1.0', 'timm'), ('0.9', 'clovaai'), ('2.2', 'clovaai')])
def test_converter_output_computes_timm_rexnet_features(tmp_path, arch, layout, capsys):
    """convert_to_backbone_weights --verify on either layout (clovaai's at the new widths
    too); the backbone then gives the same features as timm's classifier holding the same
    weights."""
    _, clovaai_state = clovaai_weights(arch)
    timm_state = clovaai_to_timm(clovaai_state)
    source = tmp_path / 'release.pth'
    torch.save(clovaai_state if layout == 'clovaai' else {'state_dict': timm_state}, source)
    model = REXNET_ARCHS[arch].model
    assert convert(['--model', model, '--checkpoint', str(source), '--output-dir', str(tmp_path), '--verify']) == 0
    backbone = ReXNetBackbone(arch)
    assert f'ok: {len(backbone.state_dict())} tensors, 0 cropped' in capsys.readouterr().out
    backbone.load_state_dict(torch.load(tmp_path / f'{model}_backbone.pth')['state_dict'], strict=True)
    classifier = timm.create_model(model)
    classifier.load_state_dict(timm_state)
    x = torch.randn(1, 3, 97, 131)
    for ours, theirs in zip(eval_features(backbone, x), timm_levels(classifier, x), strict=True):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=0)


def test_clovaai_lite_release_loads_through_init_cfg(tmp_path):
    """A clovaai lite checkpoint (their layout, head included) fills the backbone: nothing
    missing or unexpected, and the features are the lite classifier's own levels."""
    classifier = set_reference_weights(timm.create_model('rexnet_lite_100'))
    path = tmp_path / 'rexnet_lite_1.0.pth'
    torch.save(classifier.state_dict(), path)
    backbone = ReXNetBackbone('lite_1.0')
    result = backbone.load_pretrained(str(path))
    assert (result['missing'], result['unexpected']) == ([], [])
    assert sum(map(len, result['dropped'].values())) == 9  # output.{0,1,4}: the classifier head
    extractor = timm.create_model('rexnet_lite_100', features_only=True, out_indices=(1, 2, 3, 4))
    extractor.load_state_dict(backbone.body.state_dict())
    x = torch.randn(1, 3, 45, 61)
    for ours, theirs in zip(eval_features(backbone, x), eval_features(extractor, x), strict=True):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=0)


# ---- the backbone ------------------------------------------------------------------------------
@pytest.mark.parametrize('arch', CHANNELS)
def test_channels_and_strides_per_arch_on_an_odd_input(arch):
    backbone = ReXNetBackbone(arch)
    assert backbone.out_channels == CHANNELS[arch]
    assert [info['reduction'] for info in backbone.feature_info] == [4, 8, 16, 32]
    height, width = 45, 59
    features = eval_features(backbone, torch.randn(1, 3, height, width))
    assert [tuple(f.shape) for f in features] == [
        (1, c, math.ceil(height / s), math.ceil(width / s)) for c, s in zip(CHANNELS[arch], (4, 8, 16, 32))]


@pytest.mark.parametrize('arch', CHANNELS)
def test_classifier_checkpoint_keys_map_onto_the_backbone(arch):
    """timm's classifier (clovaai's layout for lite) minus its head and final conv gives
    exactly the backbone's keys and shapes."""
    with torch.device('meta'):
        classifier = timm.create_model(REXNET_ARCHS[arch].model).state_dict()
        backbone = ReXNetBackbone(arch).state_dict()
    kept, _ = split_keys(classifier, ReXNetBackbone.classifier_prefixes)
    mapped = ReXNetBackbone.remap_classifier_keys(kept)
    assert {k: v.shape for k, v in mapped.items()} == {k: v.shape for k, v in backbone.items()}


def test_rexnet_100_known_channels():
    assert ReXNetBackbone('1.0', out_indices=(1, 2, 3)).out_channels == [61, 128, 185]
    assert ReXNetBackbone('1.0').out_channels == [38, 61, 128, 185]


def test_out_indices_frozen_stages_and_norm_eval():
    backbone = ReXNetBackbone('lite_1.0', out_indices=(1, 3), frozen_stages=2, norm_eval=True)
    backbone.train()
    frozen = backbone.stem_modules() + backbone.stage_modules(0) + backbone.stage_modules(1)
    assert frozen and all(not p.requires_grad for m in frozen for p in m.parameters())
    assert all(p.requires_grad for m in backbone.stage_modules(2) for p in m.parameters())
    assert not any(m.training for m in backbone.modules() if isinstance(m, torch.nn.BatchNorm2d))
    features = backbone(torch.randn(2, 3, 64, 64))
    assert [f.shape[1] for f in features] == [64, 184]
    # Every module of body is in exactly one of stem / stage 0..3.
    parts = backbone._stem_names + [name for names in backbone._stage_names for name in names]
    assert parts == list(backbone.body.keys())


def test_lite_deploy_form_gives_the_same_features():
    torch.manual_seed(0)
    plain = set_reference_weights(ReXNetBackbone('lite_1.0')).eval()
    deployed = ReXNetBackbone('lite_1.0', deploy=True).eval()
    deployed.load_state_dict(plain.state_dict())
    x = torch.randn(1, 3, 64, 80)
    for ours, theirs in zip(eval_features(deployed, x), eval_features(plain, x), strict=True):
        assert (ours - theirs).abs().max() <= 1e-4 * theirs.abs().max()
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in deployed.modules())


@pytest.mark.parametrize('kwargs, message', [
    (dict(arch='0.8'), "unknown ReXNet arch '0.8': choose one of 0.9, 1.0, 1.3, 1.5, 2.0, 2.2, 3.0, r_1.0"),
    (dict(arch='1.0', deploy=True), 'ReXNet-1.0 has no deploy (BN-folded) form: build it with deploy=False'),
])
def test_bad_arguments_are_one_line(kwargs, message):
    with pytest.raises(BackboneConfigError) as error:
        ReXNetBackbone(**kwargs)
    assert message in str(error.value) and '\n' not in str(error.value)


# ---- the generic timm adapter with another timm model ----------------------------------------
class ResNetFeatures(TimmFeaturesBackbone):
    family = 'ResNet'
    archs = {'18': 'resnet18'}


def test_timm_adapter_serves_resnet18(tmp_path):
    backbone = ResNetFeatures('18', frozen_stages=1)
    assert isinstance(backbone, MultiScaleBackbone)
    assert backbone.out_channels == [64, 128, 256, 512]
    assert [info['reduction'] for info in backbone.feature_info] == [4, 8, 16, 32]
    assert backbone._stem_names == ['conv1', 'bn1', 'act1']
    assert backbone._stage_names[0] == ['maxpool', 'layer1']
    backbone.train()
    assert not backbone.body.layer1.training and backbone.body.layer2.training
    # A timm classifier checkpoint loads through init_cfg with its 'fc' head dropped.
    classifier = timm.create_model('resnet18')
    torch.save({'state_dict': classifier.state_dict()}, tmp_path / 'resnet18.pth')
    result = backbone.load_pretrained(str(tmp_path / 'resnet18.pth'))
    assert (result['missing'], result['unexpected'], list(result['dropped'])) == ([], [], ['fc'])
    x = torch.randn(1, 3, 37, 53)
    with torch.no_grad():
        theirs = classifier.eval().forward_intermediates(x, indices=[1, 2, 3, 4], intermediates_only=True)
    for ours, expected in zip(eval_features(backbone, x), theirs, strict=True):
        torch.testing.assert_close(ours, expected, rtol=0, atol=0)


# ---- configs and a demo training iteration -----------------------------------------------
REXNET_CONFIGS = sorted(str(p.relative_to(ROOT)) for p in (ROOT / 'configs').glob('rexnet_*.py'))


def test_every_issue_config_exists():
    expected = {f'configs/rexnet_{w}_coco{suffix}.py' for w in ('090', '100', '150', '200', '220')
                for suffix in ('', '_faster_rcnn')}
    expected |= {f'configs/rexnet_{w}_ade20k.py' for w in ('100', '150')}
    assert expected <= set(REXNET_CONFIGS)


@pytest.mark.skipif(importlib.util.find_spec('mmdet') is None, reason='mmdet is not installed')
def test_demo_training_iteration_with_a_rexnet_backbone(demo_data, tmp_path):
    """The RecNeXt detection demo with its backbone swapped for ReXNet-lite 1.0: one
    training iteration (batch 4) runs and logs a loss."""
    from test_mm import DET_DEMO, demo_options, run_tool, scalars
    work = tmp_path / 'det'
    result = run_tool('tools/train.py', DET_DEMO, '--work-dir', str(work), *demo_options(
        demo_data, 'det', 'model.backbone.type=ReXNet', 'model.backbone.arch=lite_1.0',
        'model.neck.in_channels=[40,64,128,184]', 'train_dataloader.dataset.indices=4',
        'train_cfg.max_epochs=1', 'default_hooks.logger.interval=1'))
    assert result.returncode == 0, result.stderr[-3000:]
    assert any('loss' in r and r.get('iter') == 1 for r in scalars(work))
