"""Tensor layout at the seams: backbone -> neck -> mmcv ops -> heads.

mmcv's RoIAlign reads raw memory as NCHW (mmcv issue #2203), so a channels-last feature
map reaching it gives scrambled RoI features without an error. These tests pin the two
fixes: every backbone returns contiguous NCHW in every form, and mm_common.layout makes
mmcv's raw-memory ops safe for any layout a user's neck might produce.
"""
import copy
import importlib

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.structures import InstanceData

from conftest import ROOT, set_reference_weights

torch.backends.cudnn.deterministic = True


def _channels_last(x):
    return x.contiguous(memory_format=torch.channels_last)


# ---- the op fix ---------------------------------------------------------------------------
@pytest.fixture(scope='module')
def layout_safe_ops():
    from mm_efficient_backbones import detection  # noqa: F401  (registering the backbones applies the fix)
    from mm_efficient_backbones.mm_common.layout import make_mmcv_ops_layout_safe
    return make_mmcv_ops_layout_safe()


def _random_rois(n, height, width, generator):
    x1 = torch.rand(n, generator=generator) * width * 0.6
    y1 = torch.rand(n, generator=generator) * height * 0.6
    x2 = x1 + 1 + torch.rand(n, generator=generator) * width * 0.4
    y2 = y1 + 1 + torch.rand(n, generator=generator) * height * 0.4
    batch = torch.randint(0, 2, (n,), generator=generator).float()
    return torch.stack([batch, x1, y1, x2, y2], dim=1)


def test_every_raw_memory_op_of_this_mmcv_is_patched(layout_safe_ops):
    # The ops the configs use, plus the deformable ones a user's head may bring.
    for name in ('RoIAlignFunction', 'RoIPoolFunction', 'DeformConv2dFunction',
                 'ModulatedDeformConv2dFunction', 'DeformRoIPoolFunction'):
        assert name in layout_safe_ops
    from mm_efficient_backbones.mm_common.layout import make_mmcv_ops_layout_safe
    assert make_mmcv_ops_layout_safe() == layout_safe_ops  # idempotent: no double wrapping
    from mmcv.ops.roi_align import RoIAlignFunction
    assert not hasattr(RoIAlignFunction.forward.__wrapped__, '__wrapped__')


# mmcv's CUDA kernels read raw NCHW memory as its CPU kernels do; the fix is one for both.
# RoIPool has no CPU kernel in mmcv 2.1.
ROI_OP_CASES = [('RoIAlign', 'cpu')] + (
    [('RoIAlign', 'cuda'), ('RoIPool', 'cuda')] if torch.cuda.is_available() else [])


@pytest.mark.parametrize('op,device', ROI_OP_CASES)
def test_roi_ops_read_channels_last_inputs_as_nchw(layout_safe_ops, op, device):
    import mmcv.ops
    g = torch.Generator().manual_seed(0)
    features = torch.randn(2, 16, 23, 37, generator=g).to(device)
    rois = _random_rois(12, 23, 37, g).to(device)
    layer = getattr(mmcv.ops, op)((7, 7), spatial_scale=1.0)
    expected = layer(features, rois)
    got = layer(_channels_last(features), rois)
    assert torch.equal(got, expected)

    # Without the fix the kernel really does read a channels-last tensor wrongly.
    function = getattr(importlib.import_module(type(layer).__module__), f'{op}Function')
    patched = function.forward
    try:
        function.forward = staticmethod(patched.__wrapped__)
        assert not torch.allclose(layer(_channels_last(features), rois), expected)
    finally:
        function.forward = patched


def test_roi_align_gradient_reaches_a_channels_last_input(layout_safe_ops):
    from mmcv.ops import roi_align
    g = torch.Generator().manual_seed(1)
    features = torch.randn(2, 8, 19, 27, generator=g)
    rois = _random_rois(6, 19, 27, g)
    grads = []
    for x in (features.clone(), _channels_last(features.clone())):
        x.requires_grad_(True)
        roi_align(x, rois, (5, 5), 1.0, 2, 'avg', True).square().sum().backward()
        grads.append(x.grad.contiguous())
    assert torch.allclose(grads[0], grads[1], atol=1e-6)


# ---- every family, every form: backbone -> neck -> heads --------------------------------
# (config, backbone overrides). Small archs keep the models fast; the neck follows the arch.
DETECTORS = {
    'recnext': ('configs/demo/recnext_m0_demo_coco.py', {}),
    'recnext_a': ('configs/demo/recnext_m0_demo_coco.py', dict(arch='a0')),
    'repnext': ('configs/demo/repnext_m0_demo_coco.py', {}),
    'rexnet': ('configs/rexnet_100_coco.py', {}),
    'rexnet_lite': ('configs/rexnet_100_coco.py', dict(arch='lite_1.0')),
    'convnext1d': ('configs/convnext1d_tiny_1d_coco.py', dict(arch='demo')),  # Cascade Mask R-CNN
}
SEGMENTORS = {
    'recnext_fpn': ('configs/demo/recnext_m0_demo_ade.py', {}),
    'recnext_upernet': ('configs/recnext_m3_ade20k_upernet.py', dict(arch='m0')),
    'repnext_fpn': ('configs/demo/repnext_m0_demo_ade.py', {}),
    'repnext_upernet': ('configs/repnext_m3_ade20k_upernet.py', dict(arch='m0')),
    'rexnet_fpn': ('configs/rexnet_100_ade20k.py', {}),
    'rexnet_upernet': ('configs/recnext_m3_ade20k_upernet.py', dict(type='ReXNet', arch='1.0')),
    'convnext1d_upernet': ('configs/convnext1d_tiny_1d_ade20k.py', dict(arch='demo')),
    'convnext1d_fpn': ('configs/recnext_m3_ade20k.py', dict(type='ConvNeXt1D', arch='demo', variant='1d')),
}
INPUT_SIZE = (65, 97)  # odd on purpose
HEAD_CHANNELS = 64  # narrow heads keep these seam tests quick; the layout question is the same


def build_model(config: str, backbone_overrides: dict):
    cfg = Config.fromfile(str(ROOT / config))
    init_default_scope(cfg.default_scope)
    if cfg.default_scope == 'mmdet':
        from mm_efficient_backbones import detection  # noqa: F401
        from mmdet.registry import MODELS
    else:
        from mm_efficient_backbones import segmentation  # noqa: F401
        from mmseg.registry import MODELS
    backbone_cfg = cfg.model.backbone
    if 'type' in backbone_overrides and backbone_overrides['type'] != backbone_cfg.type:
        keep = ('out_indices', 'frozen_stages', 'norm_eval')
        backbone_cfg = Config(dict(type=backbone_overrides['type'],
                                   **{k: backbone_cfg[k] for k in keep if k in backbone_cfg}))
    backbone_cfg.update(backbone_overrides, init_cfg=None, drop_path_rate=0.0)
    backbone_cfg.pop('pretrained', None)
    cfg.model.backbone = backbone_cfg
    channels = MODELS.build(copy.deepcopy(backbone_cfg)).out_channels
    if 'neck' in cfg.model:
        cfg.model.neck.in_channels = channels
    else:
        cfg.model.decode_head.in_channels = channels
        cfg.model.decode_head.channels = HEAD_CHANNELS
        aux = cfg.model.get('auxiliary_head')
        if aux:
            aux.in_channels = channels[aux.in_index]
            aux.channels = HEAD_CHANNELS
    model = MODELS.build(cfg.model)
    set_reference_weights(model, seed=3)  # random weights and BN statistics
    return model.eval()


def detector_outputs(model, x):
    """RPN maps, and the RoI heads on fixed proposals (so that no top-k can flip)."""
    from mmdet.structures import DetDataSample
    features = model.extract_feat(x)
    rpn = model.rpn_head(features)
    g = torch.Generator().manual_seed(5)
    rois = _random_rois(16, *x.shape[-2:], g)[:, 1:]
    proposals = InstanceData(bboxes=rois, scores=torch.ones(len(rois)), labels=torch.zeros(len(rois)).long())
    sample = DetDataSample(metainfo=dict(img_shape=x.shape[-2:], ori_shape=x.shape[-2:],
                                         pad_shape=x.shape[-2:], scale_factor=(1.0, 1.0),
                                         batch_input_shape=x.shape[-2:]))
    heads = model.roi_head.forward(features, [proposals], [sample])
    return [t for level in rpn for t in level] + _flatten(heads)


def _flatten(outputs):
    if isinstance(outputs, torch.Tensor):
        return [outputs]
    if isinstance(outputs, dict):
        return [t for value in outputs.values() for t in _flatten(value)]
    if isinstance(outputs, (list, tuple)):
        return [t for value in outputs for t in _flatten(value)]
    return []


def segmentor_outputs(model, x):
    features = model.extract_feat(x)
    outputs = [model.decode_head.forward(features)]
    if getattr(model, 'auxiliary_head', None) is not None:
        outputs += _flatten(model.auxiliary_head.forward(features))
    return outputs


def relative_error(got, expected) -> float:
    return max(((g - e).abs().max() / e.abs().max().clamp_min(1e-12)).item() for g, e in zip(got, expected))


def forms_agree(model, run, x):
    """The training form's outputs, then the same with layouts forced between backbone and
    neck, then the deploy form's; returns {form: relative error}."""
    def force(layout):
        return model.backbone.register_forward_hook(
            lambda module, inputs, outputs: tuple(layout(o) for o in outputs))

    errors = {}
    with torch.no_grad():
        expected = run(model, x)
        for form in ('train', 'deploy'):
            if form == 'deploy':
                model.backbone.switch_to_deploy()
                errors['deploy'] = relative_error(run(model, x), expected)
            for name, layout in (('contiguous', torch.Tensor.contiguous), ('channels_last', _channels_last)):
                handle = force(layout)
                try:
                    errors[f'{form}+{name}'] = relative_error(run(model, x), expected)
                finally:
                    handle.remove()
    return errors


@pytest.mark.parametrize('name', DETECTORS)
def test_detector_heads_see_the_same_features_in_every_form_and_layout(layout_safe_ops, name):
    config, overrides = DETECTORS[name]
    model = build_model(config, overrides)
    x = torch.randn(1, 3, *INPUT_SIZE, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        outputs = model.backbone(x)
    assert all(o.is_contiguous() for o in outputs), 'the training form returns non-NCHW tensors'
    errors = forms_agree(model, detector_outputs, x)
    with torch.no_grad():
        assert all(o.is_contiguous() for o in model.backbone(x)), 'the deploy form returns non-NCHW tensors'
    assert max(errors.values()) < 1e-4, errors


@pytest.mark.parametrize('name', SEGMENTORS)
def test_segmentor_heads_see_the_same_features_in_every_form_and_layout(layout_safe_ops, name):
    config, overrides = SEGMENTORS[name]
    model = build_model(config, overrides)
    x = torch.randn(1, 3, *INPUT_SIZE, generator=torch.Generator().manual_seed(0))
    errors = forms_agree(model, segmentor_outputs, x)
    with torch.no_grad():
        assert all(o.is_contiguous() for o in model.backbone(x))
    assert max(errors.values()) < 1e-4, errors


# ---- end to end: a trained demo detector scores the same in every form ------------------
def _coco_metrics(stdout: str) -> dict:
    line = next(line for line in reversed(stdout.splitlines()) if 'coco/bbox_mAP=' in line)
    return {key: float(value) for key, value in (item.split('=') for item in line.split())}


@pytest.fixture(scope='module')
def trained_demo_detectors(demo_data, tmp_path_factory):
    """The RecNeXt and RepNeXt demo detectors after a short schedule (2 epochs)."""
    from test_mm import demo_options, run_tool
    work = tmp_path_factory.mktemp('deploy_demo')
    checkpoints = {}
    for family, config in (('recnext', 'configs/demo/recnext_m0_demo_coco.py'),
                           ('repnext', 'configs/demo/repnext_m0_demo_coco.py')):
        result = run_tool('tools/train.py', config, '--work-dir', str(work / family), *demo_options(
            demo_data, 'det', 'train_cfg.max_epochs=2', 'train_cfg.val_interval=100',
            'default_hooks.checkpoint.interval=2', 'default_hooks.logger.interval=20'))
        assert result.returncode == 0, result.stderr[-3000:]
        checkpoints[family] = (config, work / family / 'epoch_2.pth')
    return checkpoints


def _test_metrics(demo_data, config, checkpoint, tmp_path, *options):
    from test_mm import demo_options, run_tool
    result = run_tool('tools/test.py', config, str(checkpoint), '--work-dir', str(tmp_path),
                      *demo_options(demo_data, 'det', *options))
    assert result.returncode == 0, result.stderr[-3000:]
    return _coco_metrics(result.stdout)


def test_demo_detector_scores_the_same_in_its_deploy_form(demo_data, trained_demo_detectors, tmp_path):
    config, checkpoint = trained_demo_detectors['recnext']
    train_form = _test_metrics(demo_data, config, checkpoint, tmp_path / 'train')
    deploy_form = _test_metrics(demo_data, config, checkpoint, tmp_path / 'deploy', 'model.backbone.deploy=True')
    assert train_form['coco/bbox_mAP'] > 0.1, train_form  # a trained model, so a broken seam would show
    for metric in ('coco/bbox_mAP', 'coco/segm_mAP'):
        assert abs(deploy_form[metric] - train_form[metric]) <= 0.002, (metric, train_form, deploy_form)


def test_reparameterized_repnext_detector_scores_the_same(demo_data, trained_demo_detectors, tmp_path):
    from mm_efficient_backbones.tools import reparameterize
    config, checkpoint = trained_demo_detectors['repnext']
    deploy_checkpoint = tmp_path / 'repnext_deploy.pth'
    assert reparameterize.main([str(checkpoint), str(deploy_checkpoint)]) == 0
    train_form = _test_metrics(demo_data, config, checkpoint, tmp_path / 'train')
    deploy_form = _test_metrics(demo_data, config, deploy_checkpoint, tmp_path / 'deploy',
                                'model.backbone.deploy=True')
    assert train_form['coco/bbox_mAP'] > 0.1, train_form
    for metric in ('coco/bbox_mAP', 'coco/segm_mAP'):
        assert abs(deploy_form[metric] - train_form[metric]) <= 0.002, (metric, train_form, deploy_form)
