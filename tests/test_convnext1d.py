"""ConvNeXt-1D/1D++/2D/2D++: key parity, the authors' outputs, the backbone, kernel cropping,
layer-wise lr decay ids and a demo training iteration."""
import pytest
import timm
import torch
import torch.nn.functional as F

from mm_efficient_backbones import backbones
from mm_efficient_backbones.backbones import MODEL_TO_BACKBONE, BackboneConfigError, ConvNeXt1DBackbone
from mm_efficient_backbones.backbones.models.convnext1d import CLASSIFIER_KERNELS, DOWNSTREAM_KERNELS, ConvNeXt1D
from mm_efficient_backbones.backbones.models.layers.oriented_conv import OrientedConv1d
from conftest import assert_matches_reference, load_reference, reference_shapes, set_reference_weights

VARIANTS = ['1d', '1dpp', '2d', '2dpp']


@pytest.mark.parametrize('arch', ['tiny', 'base'])
@pytest.mark.parametrize('variant', VARIANTS)
def test_state_dict_matches_reference_keys(arch, variant):
    with torch.device('meta'):  # ConvNeXt-B is 89M parameters: shapes are all we need
        model = timm.create_model(f'convnext_{arch}_{variant}')
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    want = reference_shapes(f'convnext_{arch}_{variant}')
    assert sorted(set(got) ^ set(want)) == []
    assert {k: s for k, s in got.items() if want[k] != s} == {}


@pytest.mark.parametrize('variant', VARIANTS)
def test_reproduces_the_authors_logits(variant):
    """reference_outputs/convnext_tiny_<variant>.pt, including a 97x131 input."""
    reference = load_reference(f'convnext_tiny_{variant}')
    model = set_reference_weights(timm.create_model(f'convnext_tiny_{variant}'))
    assert_matches_reference(model, reference)


def test_theta_is_not_trained_and_rotates_odd_blocks():
    model = timm.create_model('convnext_tiny_1dpp')
    thetas = {k: v for k, v in model.named_parameters() if k.endswith('theta')}
    assert thetas and not any(p.requires_grad for p in thetas.values())
    assert all(p.dtype == torch.float32 for p in thetas.values())
    first, second = thetas['stages.0.0.dwconv1.theta'], thetas['stages.0.1.dwconv1.theta']
    assert first[0].item() == 0 and second[0].item() == pytest.approx(torch.pi / 2)
    assert thetas['downsample_layers.0.dw2.theta'][0].item() == pytest.approx(torch.pi / 2)
    plain = timm.create_model('convnext_tiny_2d')
    assert not any(k.endswith('theta') for k in plain.state_dict())


@pytest.mark.parametrize('variant', VARIANTS)
def test_backbone_odd_sizes_strides_and_kernels(variant):
    backbone = ConvNeXt1DBackbone('demo', variant=variant).eval()
    stem = 'oriented stride-2 x2 (ceil)' if variant.startswith('1d') else '4x4 stride 4 (floor)'
    for size in [(97, 131), (33, 47)]:
        with torch.no_grad():
            features = backbone(torch.randn(1, 3, *size))
        height, width = size
        if variant.startswith('1d'):
            height, width = -(-height // 4), -(-width // 4)
        else:
            height, width = height // 4, width // 4
        want = []
        for channels in backbone.out_channels:
            want.append((channels, height, width))
            height, width = height // 2, width // 2
        assert [tuple(f.shape[1:]) for f in features] == want, stem
        assert all(torch.isfinite(f).all() for f in features)
    sizes = [[m.kernel_size for m in stage.modules() if isinstance(m, OrientedConv1d)]
             for stage in backbone.stages]
    expected = [[k for _ in stage for k in kernels if not (variant.startswith('2d') and k == 7)]
                for stage, kernels in zip(backbone.stages, DOWNSTREAM_KERNELS[variant])]
    assert sizes == expected


def test_backbone_arguments():
    backbone = ConvNeXt1DBackbone('demo', variant='1d', out_indices=(1, 3), frozen_stages=1, drop_path_rate=0.2)
    assert backbone.out_channels == [32, 128]
    assert [name for name, _ in backbone.named_children() if name.startswith('norm')] == ['norm1', 'norm3']
    frozen = [n for n, p in backbone.named_parameters() if not p.requires_grad and not n.endswith('theta')]
    assert frozen and all(n.startswith(('downsample_layers.0.', 'downsample_layers.1.', 'stages.0.', 'stages.1.'))
                          for n in frozen)
    assert not any(n.startswith(('stages.2', 'downsample_layers.2')) for n in frozen)
    assert max(m.drop_prob for m in backbone.modules() if hasattr(m, 'drop_prob')) == pytest.approx(0.2)
    with pytest.raises(BackboneConfigError, match="unknown ConvNeXt1D variant '3d': choose one of 1d, 1dpp, 2d, 2dpp"):
        ConvNeXt1DBackbone('demo', variant='3d')
    with pytest.raises(BackboneConfigError, match="unknown ConvNeXt1D arch 'huge'"):
        ConvNeXt1DBackbone('huge')


@pytest.mark.parametrize('variant', ['1dpp', '2dpp'])
def test_cropping_equals_zeroing_the_taps_outside_the_window(variant, tmp_path):
    """A raw classifier release through init_cfg (the checkpoint pipeline crops its kernels)
    gives the backbone the function of the classifier whose oriented taps beyond the
    downstream kernel are zeroed."""
    torch.manual_seed(0)
    classifier = ConvNeXt1D('demo', variant=variant).eval()
    torch.save({'model': classifier.state_dict()}, tmp_path / 'release.pth')
    backbone = ConvNeXt1DBackbone('demo', variant=variant)
    result = backbone.load_pretrained(str(tmp_path / 'release.pth'))  # what init_cfg=dict(type='Pretrained') runs
    backbone.eval()
    classifier_modules = dict(classifier.named_modules())
    want_cropped = [name for name, m in backbone.named_modules()
                    if isinstance(m, OrientedConv1d) and m.kernel_size != classifier_modules[name].kernel_size]
    assert want_cropped and sorted(result['cropped']) == sorted(f'{n}.weight' for n in want_cropped)
    assert result['initial'] == [f'norm{i}.{p}' for i in range(4) for p in ('weight', 'bias')]
    # Zero the classifier's taps outside the centred downstream window instead.
    with torch.no_grad():
        for name, module in classifier.named_modules():
            if isinstance(module, OrientedConv1d):
                keep = dict(backbone.named_modules())[name].kernel_size
                cut = (module.kernel_size - keep) // 2
                module.weight[..., :cut] = 0
                module.weight[..., module.kernel_size - cut:] = 0
    x = torch.randn(1, 3, 61, 75)
    with torch.no_grad():
        features = backbone(x)
        y = x
        for index, (down, stage) in enumerate(zip(classifier.downsample_layers, classifier.stages)):
            y = stage(down(y))
            torch.testing.assert_close(features[index], getattr(backbone, f'norm{index}')(y), rtol=1e-5, atol=1e-5)
    assert CLASSIFIER_KERNELS[variant] != DOWNSTREAM_KERNELS[variant]


def test_converter_resolves_oriented1d_spelling():
    from mm_efficient_backbones.backbones.weights.pipeline import FamilyRules
    from mm_efficient_backbones.tools.convert_to_backbone_weights import parse_args
    args = parse_args(['--model', 'convnext_tiny', '--variant', '1d', '--checkpoint', 'x.pth', '--output_dir', 'o'])
    target = MODEL_TO_BACKBONE[args.model]
    assert args.model == 'convnext_tiny_1d' and target.family == 'ConvNeXt1D' and target.arch == 'tiny'
    assert target.backbone_cls is ConvNeXt1DBackbone and target.options == dict(variant='1d')
    rules = FamilyRules.of(target.backbone_cls)
    assert rules.crop_kernels and rules.classifier_prefixes == ('head', 'norm')
    with torch.device('meta'):
        backbone = target.build()
    assert backbone.variant == '1d' and type(backbone) is ConvNeXt1DBackbone
    assert not hasattr(ConvNeXt1DBackbone, 'for_variant')  # no classes made at run time
    assert sorted(k for k in MODEL_TO_BACKBONE if k.startswith('convnext_')) == sorted(
        f'convnext_{a}_{v}' for a in ('tiny', 'base') for v in VARIANTS)


def test_converter_cli_model_ema(tmp_path, capsys):
    """The Oriented1D command line on a {'model', 'model_ema'} release, with --verify."""
    from mm_efficient_backbones.tools.convert_to_backbone_weights import main
    model = timm.create_model('convnext_tiny_1d')
    ema = {k: v + 1 if k.endswith('gamma') else v for k, v in model.state_dict().items()}
    torch.save({'model': model.state_dict(), 'model_ema': ema}, tmp_path / 'convnext_tiny_1d_best_ema.pth')
    code = main(['--model', 'convnext_tiny', '--variant', '1d', '--checkpoint',
                 str(tmp_path / 'convnext_tiny_1d_best_ema.pth'), '--output_dir', str(tmp_path), '--ema', '--verify'])
    out = capsys.readouterr().out
    assert code == 0 and "weights from 'model_ema'" in out
    assert '8 backbone-only tensors (norm0, norm1, norm2, norm3) at their initial values' in out
    # stage 2 (9 blocks) 31 -> 27 and stage 3 (3 blocks) 31 -> 13
    assert out.rstrip().endswith('ok: 216 tensors, 12 cropped')
    converted = torch.load(tmp_path / 'convnext_tiny_1d_backbone.pth')['state_dict']
    assert converted['stages.3.0.dwconv.weight'].shape == (768, 1, 1, 13)
    torch.testing.assert_close(converted['stages.0.0.gamma'], ema['stages.0.0.gamma'])


def test_training_step_updates_weights_not_angles():
    """One AdamW step of a reduced-width classifier: loss is finite, theta does not move."""
    torch.manual_seed(0)
    model = ConvNeXt1D('demo', variant='1dpp', num_classes=5, drop_path_rate=0.1).train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    thetas = {k: v.clone() for k, v in model.state_dict().items() if k.endswith('theta')}
    before = model.stages[0][0].dwconv1.weight.detach().clone()
    loss = F.cross_entropy(model(torch.randn(2, 3, 45, 37)), torch.tensor([1, 3]))
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)
    assert not torch.equal(before, model.stages[0][0].dwconv1.weight)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in thetas.items())


# ---- mm integration ---------------------------------------------------------------------
@pytest.mark.parametrize('scope', ['mmdet', 'mmseg'])
def test_layer_decay_constructor_assigns_convnext_layer_ids(scope):
    """mmdet's / mmseg's own LearningRateDecayOptimizerConstructor sees ConvNeXt's names."""
    pytest.importorskip(scope)
    if scope == 'mmdet':
        from mmdet.engine.optimizers import LearningRateDecayOptimizerConstructor
    else:
        from mmseg.engine.optimizers import LearningRateDecayOptimizerConstructor

    class Detector(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = ConvNeXt1DBackbone('demo', variant='1dpp')
            self.neck = torch.nn.Linear(2, 2)

    decay, num_layers = 0.7, 6
    constructor = LearningRateDecayOptimizerConstructor(
        dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=1.0, weight_decay=0.05)),
        dict(decay_rate=decay, decay_type='layer_wise', num_layers=num_layers))
    detector = Detector()
    optimizer = constructor(detector).optimizer
    scale_of = {id(p): g['lr'] for g in optimizer.param_groups for p in g['params']}
    names = {n: scale_of.get(id(p)) for n, p in detector.named_parameters()}
    top = num_layers + 2

    def scale(layer_id):
        return decay ** (top - layer_id - 1)
    # ConvNeXt's layer ids: stem 0, stage 0 -> 1, stage 1 (+ its downsample) -> 2,
    # stage 2 -> 3 + block // 3, stage 3 (+ downsample 3) -> num_layers, the rest num_layers + 1.
    assert names['backbone.downsample_layers.0.pw1.weight'] == pytest.approx(scale(0))
    assert names['backbone.stages.0.0.pwconv1.weight'] == pytest.approx(scale(1))
    assert names['backbone.downsample_layers.1.1.weight'] == pytest.approx(scale(2))
    assert names['backbone.stages.2.1.dwconv1.weight'] == pytest.approx(scale(3))
    assert names['backbone.stages.3.0.pwconv2.weight'] == pytest.approx(scale(num_layers))
    assert names['backbone.downsample_layers.3.1.weight'] == pytest.approx(scale(num_layers))
    assert names['backbone.norm0.weight'] == pytest.approx(scale(num_layers + 1))
    assert names['backbone.stages.0.0.dwconv1.theta'] is None  # not trained: in no group


def test_demo_training_iteration_mmseg(demo_data, tmp_path):
    """tools/train.py: one iteration of the seg demo with a reduced-width ConvNeXt1D-1D++
    and the layer-wise lr decay constructor."""
    pytest.importorskip('mmseg')
    from test_mm import demo_options, run_tool, scalars
    work = tmp_path / 'seg'
    result = run_tool('tools/train.py', 'configs/demo/recnext_m0_demo_ade.py', '--work-dir', str(work),
                      *demo_options(demo_data, 'seg', 'train_cfg.max_iters=1', 'default_hooks.logger.interval=1',
                                    'train_cfg.val_interval=100', 'model.backbone.type=ConvNeXt1D',
                                    'model.backbone.arch=demo', 'model.backbone.variant=1dpp',
                                    'model.backbone.drop_path_rate=0.1', 'model.neck.in_channels=[16,32,64,128]',
                                    'optim_wrapper.constructor=LearningRateDecayOptimizerConstructor',
                                    'optim_wrapper.paramwise_cfg.decay_rate=0.9',
                                    'optim_wrapper.paramwise_cfg.decay_type=stage_wise',
                                    'optim_wrapper.paramwise_cfg.num_layers=6'))
    assert result.returncode == 0, result.stderr[-3000:]
    # (The constructor raises NotImplementedError for a backbone it does not know as ConvNeXt.)
    assert any('loss' in r and r.get('iter') == 1 for r in scalars(work))


def test_family_is_registered():
    from mm_efficient_backbones.backbones.models.registry import guess_family
    assert backbones.MM_BACKBONES['ConvNeXt1D'] is ConvNeXt1DBackbone
    with torch.device('meta'):
        assert guess_family(ConvNeXt1D('demo', variant='2d').state_dict()) == 'ConvNeXt1D'
    assert 'ConvNeXt' in ConvNeXt1DBackbone.__name__  # what the mm decay constructors test for


@pytest.mark.parametrize('layout', ['classifier', 'wrapped'])
def test_pretrained_cfg_overlay_reads_oriented1d_files(layout, tmp_path):
    """timm's own loader reads Oriented1D's files (a {'model', 'model_ema'} release; also
    with every oriented conv in its detection code's ``Wrapper``) through the family's filter."""
    import re
    from conftest import set_reference_weights
    from mm_efficient_backbones.backbones.models.convnext1d import WRAPPED_ORIENTED_CONV_KEY
    source = set_reference_weights(timm.create_model('convnext_tiny_1dpp')).state_dict()
    state = source
    if layout == 'wrapped':
        state = {re.sub(r'^(.*\.(?:dwconv[12]?|dw[12]))\.(weight|bias|theta)$', r'\1.conv.\2', k): v
                 for k, v in source.items()}
        assert sum(bool(re.match(WRAPPED_ORIENTED_CONV_KEY, k)) for k in state) > 20
    torch.save({'model': state, 'epoch': 299}, tmp_path / 'convnext_tiny_1dpp.pth')
    model = timm.create_model('convnext_tiny_1dpp', pretrained=True,
                              pretrained_cfg_overlay=dict(file=str(tmp_path / 'convnext_tiny_1dpp.pth')))
    loaded = model.state_dict()
    assert loaded.keys() == source.keys() and all(torch.equal(loaded[k], v) for k, v in source.items())
