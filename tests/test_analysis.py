"""Seeing what the models do: ERF, feature maps, and predictions drawn (tools/analysis, tools/infer.py,
tools/test.py --show-dir)."""
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from mm_efficient_backbones.mm_common import erf as erf_lib
from mm_efficient_backbones.mm_common import feature_maps as fm_lib
from mm_efficient_backbones.mm_common.analysis import DPI
from mm_efficient_backbones.tools.analysis import erf as erf_tool
from mm_efficient_backbones.tools.analysis import feature_maps as fm_tool


# ---- ERF method ---------------------------------------------------------------------
def two_stacked_3x3_convs(weight=None) -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 1, 3, padding=1, bias=False))
    if weight is not None:
        with torch.no_grad():
            for conv in net:
                conv.weight.fill_(weight)
                if conv.bias is not None:
                    conv.bias.zero_()
    return net.requires_grad_(False)


def test_erf_of_two_stacked_3x3_convs_is_the_5x5_window():
    net = two_stacked_3x3_convs()
    grad = erf_lib.input_gradient(net, torch.randn(1, 3, 15, 15))
    window = torch.zeros(15, 15, dtype=torch.bool)
    window[5:10, 5:10] = True  # the output's centre is (7, 7); two 3x3 convs reach +-2
    assert torch.equal(grad != 0, window)


def test_erf_area_ratios_follow_from_the_window():
    # With every weight 1 and 4 middle channels, d centre / d input at offset (dy, dx) is
    # 4 * t(dy) * t(dx) per colour channel, t = (1, 2, 3, 2, 1): summed over 3 colours,
    # 12 * t * t = 108 at the centre down to 12 in the corners.
    x = torch.randn(1, 3, 15, 15)
    raw = erf_lib.accumulate_erf(two_stacked_3x3_convs(weight=1.0), [x, 2 * x]).astype(np.float64)
    t = np.array([1, 2, 3, 2, 1], dtype=np.float64)
    expected = np.zeros((15, 15))
    expected[5:10, 5:10] = 12 * np.outer(t, t)
    np.testing.assert_allclose(raw, expected)  # linear net: same map for every image
    data = erf_lib.log_normalised(raw)
    np.testing.assert_allclose(data.max(), 1.0)
    total = data.sum()
    # log10(v + 1): the centre holds 6 % of the sum, the 3x3 window 46 %, the 5x5 window all of it.
    assert data[7, 7] / total < 0.2 < 0.3 < data[6:9, 6:9].sum() / total < 0.5
    ratios = erf_lib.area_ratios(data)
    assert {k: v['side'] for k, v in ratios.items()} == {'20%': 3, '30%': 3, '50%': 5, '99%': 5}
    assert ratios['20%']['area_ratio'] == pytest.approx(9 / 225)
    assert ratios['99%']['area_ratio'] == pytest.approx(25 / 225)


def test_centred_window_covers_the_whole_image_at_most():
    data = np.ones((6, 10))
    assert erf_lib.centred_window(data, 0.99) == dict(side=11, area_ratio=1.0)


# ---- feature-map defaults ---------------------------------------------------------------
def test_default_maps_of_recnext_are_the_recursion_levels():
    from mm_efficient_backbones.mm_common.analysis import build_model
    model = build_model('recnext_m0').module
    maps = fm_lib.default_maps(model, torch.randn(1, 3, 64, 64))
    # The last block of the first stage (level 4) at 64 / 4 = 16 pixels, coarsest first.
    assert [label for label, _ in maps] == [
        f'stages.0.blocks.1.token_mixer level {k} (1/{2 ** k})' for k in (4, 3, 2, 1, 0)]
    assert [tuple(m.shape) for _, m in maps] == [(1, 1), (2, 2), (4, 4), (8, 8), (16, 16)]


class ChunkMixer(nn.Module):
    """Stand-in for RepNeXt's ChunkConv: identity, small, medium and large depthwise branches
    on four channel chunks."""

    def __init__(self, width: int):
        super().__init__()
        self.conv_s = nn.Conv2d(width, width, 3, padding=1, groups=width)
        self.conv_m = nn.Sequential(nn.Conv2d(width, width, 5, padding=2, groups=width),
                                    nn.BatchNorm2d(width))
        self.conv_l = nn.Sequential(nn.Conv2d(width, width, (1, 11), padding=(0, 5), groups=width),
                                    nn.Conv2d(width, width, (11, 1), padding=(5, 0), groups=width))

    def forward(self, x):
        i, s, m, l = torch.chunk(x, 4, dim=1)
        return torch.cat((i, self.conv_s(s), self.conv_m(m), self.conv_l(l)), dim=1)


class OrientedConv(nn.Module):
    """Stand-in for an oriented 1D depthwise conv: one angle per output channel."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, (1, 7), padding=(0, 3), groups=channels)
        self.theta = nn.Parameter(torch.arange(channels) % 4 * math.pi / 4, requires_grad=False)

    def forward(self, x):
        return self.conv(x)


def stand_in_trunk(mixer) -> nn.Module:
    """Stride-2 stem and two stages; the second stage is at half the first's resolution."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 16, 3, stride=2, padding=1),
                         nn.Sequential(mixer(), mixer()),
                         nn.Sequential(nn.Conv2d(16, 16, 3, stride=2, padding=1), mixer())).eval()


def test_default_maps_of_chunked_branches():
    model = stand_in_trunk(lambda: ChunkMixer(4))
    x = torch.randn(1, 3, 32, 32)
    maps = fm_lib.default_maps(model, x)
    assert [label for label, _ in maps] == [f'1.1 {b}' for b in ('identity', 'conv_s', 'conv_m', 'conv_l')]
    with torch.no_grad():
        mixer_in = model[1][0](model[0](x))
        mixer_out = model[1][1](mixer_in)
    for (_, got), chunk in zip(maps, mixer_out.split(4, dim=1)):
        torch.testing.assert_close(got, chunk[0].mean(0))
    torch.testing.assert_close(maps[0][1], mixer_in[0, :4].mean(0))  # identity: the input chunk


def test_default_maps_of_oriented_kernels_are_angle_groups():
    model = stand_in_trunk(lambda: OrientedConv(16))
    x = torch.randn(1, 3, 32, 32)
    maps = fm_lib.default_maps(model, x)
    assert [label for label, _ in maps] == [f'1.1 θ={a:.1f}°' for a in (0, 45, 90, 135)]
    with torch.no_grad():
        out = model[1](model[0](x))
    torch.testing.assert_close(maps[1][1], out[0, [1, 5, 9, 13]].mean(0))  # channels at 45°


def test_many_distinct_angles_are_binned():
    groups = fm_lib.angle_groups(torch.linspace(0, math.pi, 33)[:-1])
    assert len(groups) == fm_lib.ANGLE_BINS and sum(len(index) for _, index in groups) == 32


def test_default_maps_fall_back_to_the_stage_outputs():
    import timm
    torch.manual_seed(0)
    model = timm.create_model('resnet10t').eval()
    maps = fm_lib.default_maps(model, torch.randn(1, 3, 64, 64))
    assert [label for label, _ in maps] == ['act1', 'layer1', 'layer2', 'layer3', 'layer4']


def test_stage_output_of_a_timm_model_uses_its_classifier_weights():
    from mm_efficient_backbones.mm_common.analysis import build_model
    model = build_model('resnet10t')  # random init: features_only must get the same weights
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = model.module.forward_intermediates(x, indices=[2], intermediates_only=True)[0]
        torch.testing.assert_close(model.stage_output(x, 2), expected)


# ---- the tools on recnext_m0 and the demo data --------------------------------------------
def png_size(path):
    with Image.open(path) as image:
        image.load()
        return image.size


def test_erf_tool_writes_figure_maps_and_ratios(demo_data, tmp_path, capsys):
    out = tmp_path / 'erf.png'
    code = erf_tool.main(['--models', 'recnext_m0', 'resnet10t', '--images', str(demo_data / 'coco' / 'val2017'),
                          '--num-images', '2', '--size', '64', '--out', str(out), '--json'])
    assert code == 0, capsys.readouterr().err
    panel = erf_lib.PANEL_INCHES * DPI
    assert png_size(out) == (2 * panel, panel)
    assert np.load(tmp_path / 'erf_recnext_m0.npy').shape == (64, 64)
    summary = json.loads((tmp_path / 'erf.json').read_text())
    assert [s['model'] for s in summary] == ['recnext_m0', 'resnet10t']
    assert summary[0]['weights'] == 'random init' and summary[0]['stage'] == 3
    ratios = [summary[0]['ratios'][k]['area_ratio'] for k in ('20%', '30%', '50%', '99%')]
    assert ratios == sorted(ratios) and 0 < ratios[0] and ratios[-1] <= 1


def test_feature_map_tool_writes_a_grid(demo_data, tmp_path, capsys):
    out = tmp_path / 'maps.png'
    code = fm_tool.main(['recnext_m0', str(demo_data / 'coco' / 'val2017'), '--size', '64', '--out', str(out)])
    assert code == 0, capsys.readouterr().err
    panel = fm_lib.PANEL_INCHES * DPI
    assert png_size(out) == (5 * panel, 2 * panel)  # input + 5 levels on a 5-column grid


def test_analysis_reads_every_spec_that_export_does():
    """One reader of model names for export, benchmark, erf and feature_maps: TYPE:ARCH:VARIANT too."""
    from mm_efficient_backbones.backbones import export
    from mm_efficient_backbones.backbones.models import registry, specs
    from mm_efficient_backbones.mm_common import analysis
    assert analysis.resolve is specs.resolve is export.resolve
    for spec in registry.model_names() + registry.backbone_specs():  # what export --all exports
        assert specs.resolve(spec, any_timm=True).target is not None, spec
    loaded = analysis.build_model('ConvNeXt1D:demo:2d')
    assert loaded.module.variant == '2d' and loaded.num_stages == 4
    assert loaded.stage_output(torch.randn(1, 3, 32, 32), 3).shape[1] == loaded.module.out_channels[3]


@pytest.fixture
def bad_inputs(demo_data, tmp_path):
    empty = tmp_path / 'empty'
    empty.mkdir()
    broken = tmp_path / 'broken'
    broken.mkdir()
    (broken / 'a.jpg').write_bytes(b'not an image')
    return dict(images=str(demo_data / 'coco' / 'val2017'), empty=str(empty), broken=str(broken))


@pytest.mark.parametrize('tool, args, message', [
    ('erf', ['--models', 'recnext_m0', '--images', '{empty}'],
     'error: no images (.jpg, .jpeg, .png, .bmp, .webp, .tif, .tiff) in {empty}'),
    ('erf', ['--models', 'no_such_net', '--images', '{images}'],
     "error: unknown model 'no_such_net': give a timm model name (e.g. convnext_tiny_1d, resnet18) "
     'or an mm backbone as TYPE:ARCH (ConvNeXt1D:ARCH[:VARIANT], RecNeXt:ARCH, RepNeXt:ARCH, ReXNet:ARCH)'),
    ('erf', ['--models', 'recnext_m0', '--images', '{broken}'],
     'error: cannot read image {broken}/a.jpg: not an image file, or a damaged one'),
    ('erf', ['--models', 'recnext_m0', '--images', '{images}', '--stage', '4'],
     'error: --stage 4 is out of range for recnext_m0: it has 4 stages, use 0..3 (or -1 for the last)'),
    ('erf', ['--models', 'recnext_m0', 'resnet10t', '--images', '{images}', '--checkpoint', 'x.pth'],
     "error: --checkpoint got 1 paths for 2 models: give one per model, in the same order ('none' for random init)"),
    ('fm', ['recnext_m0', '{images}', '--modules', 'stages.0.blocks.9'],
     "error: no module 'stages.0.blocks.9' in RecNeXtBackbone (did you mean stages.0.blocks.1, stages.0.blocks.0, "
     'stages.0.blocks?)'),
])
def test_bad_input_is_one_line(bad_inputs, capsys, tool, args, message):
    main = erf_tool.main if tool == 'erf' else fm_tool.main
    code = main([a.format(**bad_inputs) for a in args] + ['--size', '32', '--out', '/dev/null'])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err == [message.format(**bad_inputs)]


# ---- predictions drawn (mmdet / mmseg) ------------------------------------------------------
DEMO_CONFIGS = {'det': 'configs/demo/recnext_m0_demo_coco.py', 'seg': 'configs/demo/recnext_m0_demo_ade.py'}


def demo_val_images(demo_data, task):
    folder = demo_data / 'coco' / 'val2017' if task == 'det' else demo_data / 'ade' / 'images' / 'validation'
    return sorted(folder.glob('*.jpg'))


@pytest.fixture(scope='session')
def demo_checkpoints(tmp_path_factory):
    """A checkpoint per demo config, as tools/train.py saves them (weights and dataset_meta),
    but with the initial weights: drawing does not need a trained model, and this skips
    the training run."""
    pytest.importorskip('mmdet')
    pytest.importorskip('mmseg')
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    from conftest import ROOT
    out = tmp_path_factory.mktemp('checkpoints')
    paths = {}
    for task, config in DEMO_CONFIGS.items():
        cfg = Config.fromfile(str(ROOT / config))
        with DefaultScope.overwrite_default_scope(cfg.default_scope):
            if task == 'det':
                from mm_efficient_backbones import detection  # noqa: F401
                from mmdet.registry import MODELS
            else:
                from mm_efficient_backbones import segmentation  # noqa: F401
                from mmseg.registry import MODELS
            torch.manual_seed(0)
            model = MODELS.build(cfg.model)
        meta = dict(dataset_meta=dict(cfg.train_dataloader.dataset.metainfo))
        paths[task] = out / f'{task}.pth'
        torch.save(dict(meta=meta, state_dict=model.state_dict()), paths[task])
    return paths


@pytest.mark.parametrize('task', DEMO_CONFIGS)
def test_infer_draws_predictions_on_images(demo_data, demo_checkpoints, tmp_path, task, capsys):
    from mm_efficient_backbones.tools import infer
    images = tmp_path / 'images'
    images.mkdir()
    for source in demo_val_images(demo_data, task)[:2]:
        (images / source.name).write_bytes(source.read_bytes())
    code = infer.main([DEMO_CONFIGS[task], str(demo_checkpoints[task]), str(images),
                       '--out-dir', str(tmp_path / 'out'), '--score-thr', '0', '--device', 'cpu'])
    assert code == 0, capsys.readouterr().err[-3000:]
    printed = capsys.readouterr().out.split()
    drawn = [tmp_path / 'out' / 'vis' / p.name for p in sorted(images.iterdir())]
    assert [str(p) for p in drawn] == printed[-2:]
    for path, source in zip(drawn, sorted(images.iterdir())):
        with Image.open(path) as image, Image.open(source) as original:
            assert image.size == original.size
            # Something was drawn: boxes (every score is kept at --score-thr 0) or the label map.
            assert np.abs(np.asarray(image, np.int16) - np.asarray(original, np.int16)).max() > 50


@pytest.mark.parametrize('task', DEMO_CONFIGS)
def test_show_dir_writes_one_image_per_test_image(demo_data, demo_checkpoints, tmp_path, task):
    # A process of its own: mmengine's runner and visualizers are process-wide singletons.
    from test_mm import demo_options, run_tool
    show_dir = tmp_path / 'show'
    result = run_tool('tools/test.py', DEMO_CONFIGS[task], str(demo_checkpoints[task]), '--work-dir',
                      str(tmp_path / 'work'), '--show-dir', str(show_dir),
                      *demo_options(demo_data, task, 'test_dataloader.dataset.indices=2'))
    assert result.returncode == 0, result.stderr[-3000:]
    drawn = sorted(p for p in show_dir.rglob('*') if p.suffix in ('.jpg', '.png'))
    assert len(drawn) == 2, drawn
    for path in drawn:
        with Image.open(path) as image:
            assert image.size == (256, 128)  # ground truth | prediction, as mmdet and mmseg draw them


@pytest.mark.parametrize('make_input, message', [
    (lambda tmp: tmp, 'error: no images (.jpg, .jpeg, .png, .bmp, .webp, .tif, .tiff) in {tmp}'),
    (lambda tmp: tmp / 'missing.jpg', 'error: no such image or folder: {tmp}/missing.jpg'),
])
def test_infer_bad_input_is_one_line(tmp_path, capsys, make_input, message):
    from mm_efficient_backbones.tools import infer
    checkpoint = tmp_path / 'model.pth'
    checkpoint.write_bytes(b'')
    code = infer.main([DEMO_CONFIGS['det'], str(checkpoint), str(make_input(tmp_path))])
    assert code == 2
    assert capsys.readouterr().err.strip().splitlines() == [message.format(tmp=tmp_path)]


STAGE_2_OF = {  # the classifier's own way to stage 2
    'recnext_m0': lambda model, x: model.stages[:3](model.stem(x)),
    'resnet10t': lambda model, x: model.forward_intermediates(x, indices=[2], intermediates_only=True)[0],
}


@pytest.mark.parametrize('name, key', [('recnext_m0', 'stem.stem.0.conv.weight'), ('resnet10t', 'conv1.0.weight')])
def test_checkpoint_is_loaded_for_our_models_and_timm_models(tmp_path, name, key):
    import timm
    from mm_efficient_backbones.mm_common.analysis import build_model
    torch.manual_seed(1)
    classifier = timm.create_model(name)
    path = tmp_path / f'{name}.pth'
    torch.save({'model': classifier.state_dict()} if name == 'recnext_m0' else classifier.state_dict(), path)
    model = build_model(name, str(path))
    assert model.weights == f'{name}.pth'
    torch.testing.assert_close(model.module.state_dict()[key], classifier.state_dict()[key])
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():  # the stage outputs use the loaded weights too
        torch.testing.assert_close(model.stage_output(x, 2), STAGE_2_OF[name](classifier.eval(), x))
