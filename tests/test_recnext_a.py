"""RecNeXt-A (linear-attention RecAttn2d) and the RecConv variants: checkpoint keys, the
authors' outputs, linear vs n x n attention, fusion, odd input sizes, mm and converter."""
import pytest
import timm
import torch
import torch.nn.functional as F
from torch import nn

from mm_efficient_backbones.backbones import MODEL_TO_BACKBONE, BackboneConfigError, RecNeXtBackbone
from mm_efficient_backbones.backbones.models.recnext import RecAttn2d, RecConv2d, linear_attention
from conftest import assert_matches_reference, load_reference, reference_shapes, set_reference_weights
from test_recnext import randomize_bn

A_ARCHS = ['a0', 'a1', 'a2', 'a3', 'a4', 'a5']
# Every (variant, mode) RecConv2d accepts; 'group' changes widths, so only transposed convs restore them.
RECCONV_FORMS = [('shared', 'bilinear'), ('shared', 'nearest'), ('shared', 'transpose'),
                 ('split', 'bilinear'), ('split', 'nearest'), ('split', 'transpose'), ('group', 'transpose')]
ODD_SIZES = [(97, 131), (33, 47), (5, 3)]


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---- the authors' A-series ---------------------------------------------------------------------
@pytest.mark.parametrize('arch', A_ARCHS)
def test_a_state_dict_matches_reference(arch):
    with torch.device('meta'):  # shapes only: no memory, no init cost
        model = timm.create_model(f'recnext_{arch}')
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    want = reference_shapes(f'recnext_{arch}')
    assert sorted(set(got) ^ set(want)) == []
    assert {k: s for k, s in got.items() if want[k] != s} == {}


def test_a_default_drop_path_and_mlp_ratio():
    def max_rate(model):
        return max((m.drop_prob for m in model.modules() if hasattr(m, 'drop_prob')), default=0.0)
    with torch.device('meta'):
        rates = {arch: max_rate(timm.create_model(f'recnext_{arch}')) for arch in ('a3', 'a4', 'a5')}
        a3 = RecNeXtBackbone('a3')
    assert rates == pytest.approx({'a3': 0.0, 'a4': 0.2, 'a5': 0.3})
    # MLP hidden width int(dim * 1.875), downsampling MLPs included.
    assert a3.stages[0].blocks[0].channel_mixer[0].conv.out_channels == 120
    assert a3.stages[3].downsample.channel_mixer[0].conv.out_channels == 960
    assert isinstance(a3.stages[0].blocks[0].norm, nn.Identity)  # no BN between RecAttn and MLP


@pytest.mark.parametrize('arch', ['a0', 'a3'])
def test_a_matches_authors_reference_outputs(arch):
    """The authors' code on the README's seeded weights (128x128 and odd 97x131), unfused and fused.
    Their last stage used the n x n attention matrix; ours is the linear form everywhere."""
    reference = load_reference(f'recnext_{arch}')
    model = set_reference_weights(timm.create_model(f'recnext_{arch}'))
    assert list(model.state_dict()) == list(reference['keys'])
    assert_matches_reference(model, reference)
    model.fuse()
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    assert_matches_reference(model, reference)


def quadratic_attention(q, k, v, eps=1e-6):
    """The authors' explicit form: A = q^T k (n x n), A / (mean over keys + eps), (A n^-1/2)(v^T n^-1/2)."""
    scale = q.shape[-1] ** -0.5
    attn = q.transpose(-1, -2) @ k
    attn = attn / (attn.mean(dim=-1, keepdim=True) + eps)
    return (attn * scale) @ (v.transpose(-1, -2) * scale)


@pytest.mark.parametrize('heads, dim, n', [(2, 20, 63), (16, 32, 273), (4, 8, 1)])
def test_linear_attention_equals_quadratic_form(heads, dim, n):
    gen = torch.Generator().manual_seed(heads * n)
    q, k = (F.elu(torch.randn(2, heads, dim, n, generator=gen)) + 1 for _ in range(2))
    v = torch.randn(2, heads, dim, n, generator=gen)
    want = quadratic_attention(q, k, v)
    got = linear_attention(q, k, v)
    assert got.shape == want.shape == (2, heads, n, dim)
    assert (got - want).abs().max() <= 1e-5 * want.abs().max()


def test_deploy_a_backbone_equals_training_form():
    torch.manual_seed(0)
    trained = randomize_bn(RecNeXtBackbone('a0')).eval()
    deployed = RecNeXtBackbone('a0', deploy=True)
    deployed.load_state_dict(trained.state_dict())
    x = torch.randn(1, 3, 97, 131)
    with torch.no_grad():
        want, got = trained(x), deployed.eval()(x)
    assert deployed.fused
    assert [tuple(f.shape[-2:]) for f in got] == [(25, 33), (13, 17), (7, 9), (4, 5)]
    for a, b in zip(want, got):
        assert (a - b).abs().max() <= 1e-4 * a.abs().max()


def test_a_timm_features_only():
    model = timm.create_model('recnext_a0', features_only=True).eval()
    with torch.no_grad():
        feats = model(torch.randn(1, 3, 65, 99))
    assert model.feature_info.channels() == [40, 80, 160, 320]
    assert [tuple(f.shape[-2:]) for f in feats] == [(17, 25), (9, 13), (5, 7), (3, 4)]


# ---- RecConv variants and upsampling modes ----------------------------------------------------
def readme_recconv(module: RecConv2d, x):
    """The paper README's forward of each variant (valid where every level halves exactly),
    on ``module``'s own weights: our crop/pad-to-size must not change it there."""
    def up(index, t):
        ups = module.ups[index]
        return nn.ConvTranspose2d.forward(ups, t) if isinstance(ups, nn.ConvTranspose2d) else F.interpolate(
            t, scale_factor=2, mode=ups.mode)
    if module.variant == 'split':
        kept = []
        for down in module.downs:
            keep, x = torch.chunk(x, 2, dim=1)
            kept.append(keep)
            x = down(x)
        for index, (conv, keep) in enumerate(zip(module.convs, reversed(kept))):
            x = torch.cat([keep, up(index, conv(x))], dim=1)
        return module.convs[-1](x)
    downs = [module.down] * module.level if module.variant == 'shared' else module.downs
    features, coarse = [], x
    for down in downs:
        coarse = down(coarse)
        features.append(coarse)
    upsampled = 0
    for index, (conv, feature) in enumerate(zip(module.convs, reversed(features))):
        upsampled = up(index, conv(feature + upsampled))
    return module.convs[-1](x + upsampled)


@pytest.mark.parametrize('variant, mode', RECCONV_FORMS)
def test_recconv_variant_equals_readme_form(variant, mode):
    torch.manual_seed(0)
    module = RecConv2d(16, level=3, variant=variant, mode=mode).eval()
    x = torch.randn(2, 16, 32, 40)
    with torch.no_grad():
        torch.testing.assert_close(module(x), readme_recconv(module, x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('size', ODD_SIZES)
@pytest.mark.parametrize('variant, mode', RECCONV_FORMS)
def test_recconv_any_input_size(variant, mode, size):
    """Odd sizes (a level of 1x1 included): output keeps the input size and gradients flow."""
    torch.manual_seed(0)
    module = RecConv2d(10, level=3, variant=variant, mode=mode) if variant != 'group' else RecConv2d(
        16, level=3, variant=variant, mode=mode)
    x = torch.randn(2, module.convs[-1].in_channels, *size, requires_grad=True)
    out = module(x)
    assert out.shape == x.shape and torch.isfinite(out).all()
    out.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in module.parameters())


def test_transposed_upsampling_crops_to_the_saved_size():
    """Odd sizes: the transposed conv's 2x output is cropped, so its top-left part is kept as is."""
    torch.manual_seed(0)
    module = RecConv2d(4, level=1, mode='transpose').eval()
    x = torch.randn(1, 4, 9, 13)
    with torch.no_grad():
        coarse = module.convs[0](module.down(x))  # 5x7
        full = nn.ConvTranspose2d.forward(module.ups[0], coarse)  # 10x14
        assert full.shape[-2:] == (10, 14)
        want = module.convs[-1](x + full[..., :9, :13])
        torch.testing.assert_close(module(x), want)


@pytest.mark.parametrize('mode', ['nearest', 'bilinear', 'transpose'])
@pytest.mark.parametrize('size', ODD_SIZES)
def test_recattn_any_input_size(mode, size):
    torch.manual_seed(0)
    module = RecAttn2d(8, num_heads=4, mode=mode)
    x = torch.randn(2, 8, *size)
    out = module(x)
    assert out.shape == x.shape and torch.isfinite(out).all()


@pytest.mark.parametrize('arch, recconv', [
    ('m1', dict(mode='transpose', variant='group')),
    ('m0', dict(mode='nearest', variant='split')),  # 40 channels halve to 2 unevenly: split still works
    ('m0', dict(mode='transpose', kernel_size=7)),
    ('a0', dict(mode='transpose')),
])
def test_backbone_variants_odd_input_and_fusion(arch, recconv):
    torch.manual_seed(0)
    backbone = randomize_bn(RecNeXtBackbone(arch, recconv=recconv)).eval()
    x = torch.randn(1, 3, 97, 131)
    with torch.no_grad():
        before = backbone(x)
        backbone.switch_to_deploy()
        after = backbone(x)
    assert [tuple(f.shape[-2:]) for f in before] == [(25, 33), (13, 17), (7, 9), (4, 5)]
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in backbone.modules())
    for a, b in zip(before, after):
        assert (a - b).abs().max() <= 1e-4 * a.abs().max()


def test_variants_change_parameters_as_designed():
    def params(**recconv):
        return sum(p.numel() for p in RecConv2d(64, level=2, **recconv).parameters())
    k = 25  # 5x5 depthwise
    assert params() == 64 * k * 4  # one shared down + three convs
    assert params(mode='transpose') == 64 * k * 4 + 2 * 64 * 36  # + two 6x6 depthwise transposed convs
    assert params(variant='split', mode='nearest') == (32 + 16) * k + (64 + 32 + 16) * k
    assert params(variant='group', mode='transpose') == (64 + 32) * k + (64 + 32 + 16) * k + (64 + 32) * 36


@pytest.mark.parametrize('arch, recconv, message', [
    ('m0', dict(modes='nearest'), 'unknown recconv option(s) modes: use mode, variant, kernel_size'),
    ('m0', dict(mode='area'), "recconv mode='area' is not one of bilinear, nearest, transpose"),
    ('m0', dict(variant='tree'), "recconv variant='tree' is not one of shared, group, split"),
    ('m3', dict(variant='group'), "recconv variant='group' restores the halved channels with transposed convs: "
                                  "set mode='transpose'"),
    ('m0', dict(variant='group', mode='transpose'),
     "recconv variant='group' halves the channels 4 times: 40 channels are not divisible by 16; "
     'use variant shared or split'),
    ('a0', dict(variant='split'), "recconv variant='split' applies to the M-series RecConv2d only; "
                                  'the A-series RecAttn2d takes mode and kernel_size'),
    ('m0', dict(kernel_size=4), 'recconv kernel_size=4 must be a positive odd int'),
])
def test_bad_recconv_options_are_one_line(arch, recconv, message):
    with pytest.raises(BackboneConfigError) as error:
        RecNeXtBackbone(arch, recconv=recconv)
    assert str(error.value) == message


# ---- mm and the converter ------------------------------------------------------------------------
def test_mm_config_builds_a_series_with_a_recconv_variant():
    pytest.importorskip('mmdet')
    from mmengine.registry import init_default_scope

    from mm_efficient_backbones import detection  # noqa: F401
    from mmdet.registry import MODELS
    init_default_scope('mmdet')
    backbone = MODELS.build(dict(type='RecNeXt', arch='m1', recconv=dict(mode='transpose', variant='split')))
    assert isinstance(backbone.stages[0].blocks[0].token_mixer.ups[0], nn.ConvTranspose2d)
    assert MODELS.build(dict(type='RecNeXt', arch='a0')).out_channels == [40, 80, 160, 320]


def test_converter_handles_a_series(tmp_path, capsys):
    from mm_efficient_backbones.tools import convert_to_backbone_weights as convert
    assert MODEL_TO_BACKBONE['recnext_a3'] == (RecNeXtBackbone, 'a3')
    classifier = randomize_bn(timm.create_model('recnext_a0'), seed=3).eval()
    torch.save({'model': classifier.state_dict()}, tmp_path / 'a0.pth')
    code = convert.main(['--model', 'recnext_a0', '--checkpoint', str(tmp_path / 'a0.pth'),
                         '--output-dir', str(tmp_path / 'out'), '--verify'])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert 'head.head: 7 tensors, head.head_dist: 7 tensors' in out
    backbone = RecNeXtBackbone('a0')
    saved = torch.load(tmp_path / 'out' / 'recnext_a0_backbone.pth', weights_only=True)
    assert out.rstrip().splitlines()[-1] == f'ok: {len(backbone.state_dict())} tensors, 0 cropped'
    backbone.load_state_dict(saved['state_dict'], strict=True)
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        assert torch.equal(backbone.eval()(x)[-1], classifier.forward_features(x))


def test_demo_training_iteration_with_a0(demo_data, tmp_path):
    pytest.importorskip('mmseg')
    from test_mm import SEG_DEMO, demo_options, run_tool, scalars
    result = run_tool('tools/train.py', SEG_DEMO, '--work-dir', str(tmp_path), *demo_options(
        demo_data, 'seg', 'model.backbone.arch=a0', 'train_cfg.max_iters=1', 'default_hooks.logger.interval=1',
        'train_cfg.val_interval=100'))
    assert result.returncode == 0, result.stderr[-3000:]
    log = next(tmp_path.glob('*/*.log')).read_text()
    assert "arch='a0'" in log
    losses = [r['loss'] for r in scalars(tmp_path) if 'loss' in r and r.get('iter') == 1]
    assert losses and all(loss == loss and loss > 0 for loss in losses)  # a finite positive loss
