"""RepNeXt-M: checkpoint-format parity, the authors' outputs in every form, the deploy
levels, freezing, odd sizes, the reparameterise tool and the converter's --deploy."""
import copy

import pytest
import timm
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from mm_efficient_backbones import backbones
from mm_efficient_backbones.backbones import RepNeXtBackbone
from mm_efficient_backbones.backbones.models.repnext import (ChunkConv, MediumRepConv, SingleKernelChunkConv, SmallRepConv,
                               collapse_chunk_convs)
from conftest import (assert_matches_reference, load_reference, reference_shapes,
                      set_reference_weights)
from mm_efficient_backbones.tools import reparameterize

ARCHS = ['m0', 'm1', 'm2', 'm3', 'm4', 'm5']


def max_relative_error(want, got) -> float:
    return max(((a - b).abs().max() / a.abs().max()).item() for a, b in zip(want, got))


def features(model, x):
    with torch.no_grad():
        return model.eval()(x)


def detector_checkpoint(path, backbone: RepNeXtBackbone) -> None:
    """What tools/train.py writes, reduced to what reparameterize reads."""
    state = {f'backbone.{k}': v for k, v in backbone.state_dict().items()}
    state['neck.lateral_convs.0.conv.weight'] = torch.randn(8, 40, 1, 1)
    torch.save({'meta': dict(epoch=1), 'state_dict': state, 'optimizer': dict(state={})}, path)


# ---- format ----------------------------------------------------------------------------
@pytest.mark.parametrize('arch', ARCHS)
def test_state_dict_matches_reference(arch):
    got = {k: tuple(v.shape) for k, v in timm.create_model(f'repnext_{arch}').state_dict().items()}
    want = reference_shapes(f'repnext_{arch}')
    assert sorted(set(got) ^ set(want)) == []
    assert {k: s for k, s in got.items() if want[k] != s} == {}


def test_registered_for_mm_and_converter():
    assert backbones.MM_BACKBONES['RepNeXt'] is RepNeXtBackbone
    assert backbones.MODEL_TO_BACKBONE['repnext_m3'] == (RepNeXtBackbone, 'm3')
    assert backbones.guess_family(reference_shapes('repnext_m0')) == 'RepNeXt'


# ---- the authors' function, in every form ----------------------------------------------
@pytest.mark.parametrize('arch', ['m0', 'm3'])
def test_matches_authors_reference_outputs_in_every_form(arch, tmp_path):
    """Training form, level 1, level 2 and level 3 (a deploy=True backbone built directly,
    loaded from tools/reparameterize.py's output, under the fused classifier head)."""
    reference = load_reference(f'repnext_{arch}')
    model = set_reference_weights(timm.create_model(f'repnext_{arch}')).eval()
    assert list(model.state_dict()) == list(reference['keys'])
    assert_matches_reference(model, reference)
    assert_matches_reference(copy.deepcopy(model).fuse(), reference)
    assert_matches_reference(copy.deepcopy(model).fuse(single_kernel=True), reference)

    trunk = RepNeXtBackbone(arch)
    trunk.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith('head')})
    detector_checkpoint(tmp_path / 'trained.pth', trunk)
    head = copy.deepcopy(model.head).eval().fuse()
    for single_kernel in (False, True) if arch == 'm0' else (False,):  # M3's level 2 is checked above
        out = tmp_path / f'deploy_{single_kernel}.pth'
        assert reparameterize.main([str(tmp_path / 'trained.pth'), str(out)]
                                   + ['--single-kernel'] * single_kernel) == 0
        state = torch.load(out)['state_dict']
        deployed = RepNeXtBackbone(arch, deploy=True, single_kernel=single_kernel)
        deployed.load_state_dict({k[len('backbone.'):]: v for k, v in state.items()
                                  if k.startswith('backbone.')}, strict=True)
        classifier = nn.Sequential(deployed, LastStagePool(), head)
        assert_matches_reference(classifier, reference)


class LastStagePool(nn.Module):
    def forward(self, feats):
        return feats[-1].mean((2, 3))


# ---- deploy levels -----------------------------------------------------------------------
@pytest.mark.parametrize('stride', [1, 2])
@pytest.mark.parametrize('branch', [SmallRepConv, MediumRepConv])
def test_each_branch_fuses_into_one_conv(branch, stride):
    module = set_reference_weights(branch(6, stride=stride))
    fused = module.fuse()
    assert isinstance(fused, nn.Conv2d) and fused.kernel_size == ((3, 3) if branch is SmallRepConv else (7, 7))
    x = torch.randn(2, 6, 19, 24)
    assert max_relative_error([module(x)], [fused(x)]) < 1e-5


def test_single_kernel_needs_its_edge_bias():
    """The large branch's row-conv bias only partly reaches the top and bottom 5 rows, so
    folding it into the 11x11 conv's bias (the naive merge) is exact only inside."""
    chunk = set_reference_weights(ChunkConv(8)).eval()
    merged = chunk.single_kernel()
    x = torch.randn(1, 8, 23, 17, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = chunk(x)
        assert max_relative_error([want], [merged(x)]) < 1e-5
        row, column = chunk.conv_l
        merged.conv.bias[6:] += row.bias * column.weight.sum((1, 2, 3))
        merged.edge_bias.zero_()
        error = (want - merged(x)).abs().amax(dim=(0, 1, 3)) / want.abs().max()
    assert error[5:-5].max() < 1e-5
    assert error[:5].min() > 1e-4 and error[-5:].min() > 1e-4  # over the 1e-4 bar


def test_deploy_levels_equal_training_form_and_have_one_conv_per_branch():
    trained = set_reference_weights(RepNeXtBackbone('m0')).eval()
    x = torch.randn(1, 3, 97, 131)
    want = features(trained, x)
    level1 = copy.deepcopy(trained).switch_to_deploy()
    level2 = collapse_chunk_convs(copy.deepcopy(level1))
    for model in (level1, level2):
        assert max_relative_error(want, features(model, x)) < 1e-4
        assert not any(isinstance(m, (_BatchNorm, SmallRepConv, MediumRepConv)) for m in model.modules())
    block = level1.stages[0].blocks[0]
    assert [type(m) for m in (block.token_mixer.conv_s, block.token_mixer.conv_m)] == [nn.Conv2d] * 2
    assert isinstance(block.norm, nn.Identity)
    assert isinstance(level2.stages[0].blocks[0].token_mixer, SingleKernelChunkConv)
    assert level2.stages[0].blocks[0].token_mixer.conv.kernel_size == (11, 11)


@pytest.mark.parametrize('single_kernel', [False, True])
def test_deploy_true_builds_the_collapsed_form_directly(single_kernel):
    trained = set_reference_weights(RepNeXtBackbone('m0', single_kernel=single_kernel))
    collapsed = copy.deepcopy(trained).eval().switch_to_deploy()
    built = RepNeXtBackbone('m0', deploy=True, single_kernel=single_kernel)
    assert built.fused
    assert {k: v.shape for k, v in built.state_dict().items()} == \
        {k: v.shape for k, v in collapsed.state_dict().items()}
    built.load_state_dict(collapsed.state_dict(), strict=True)
    x = torch.randn(1, 3, 64, 96)
    assert max_relative_error(features(trained, x), features(built, x)) < 1e-4
    with pytest.raises(RuntimeError, match='inference only'):
        built.train()(x)


# ---- dense-prediction behaviour -----------------------------------------------------------
@pytest.mark.parametrize('size', [(33, 47), (97, 131)])
def test_odd_input_sizes(size):
    trained = set_reference_weights(RepNeXtBackbone('m0')).eval()
    deployed = copy.deepcopy(trained).switch_to_deploy()
    x = torch.randn(1, 3, *size)
    got, want = features(deployed, x), features(trained, x)
    expect = size
    for feat, channels in zip(got, (40, 80, 160, 320)):
        for _ in range(2 if channels == 40 else 1):  # stride 4 first, then 2 per stage
            expect = ((expect[0] + 1) // 2, (expect[1] + 1) // 2)
        assert tuple(feat.shape[1:]) == (channels, *expect)
    assert max_relative_error(want, got) < 1e-4


def test_timm_features_only():
    model = timm.create_model('repnext_m0', features_only=True).eval()
    assert model.feature_info.channels() == [40, 80, 160, 320]
    assert [tuple(f.shape[-2:]) for f in features(model, torch.randn(1, 3, 65, 99))] == \
        [(17, 25), (9, 13), (5, 7), (3, 4)]


def test_frozen_stages_and_norm_eval():
    backbone = RepNeXtBackbone('m0', frozen_stages=1, norm_eval=True, out_indices=(1, 3)).train()
    frozen = list(backbone.stem.parameters()) + list(backbone.stages[0].parameters())
    assert frozen and not any(p.requires_grad for p in frozen)
    assert all(p.requires_grad for p in backbone.stages[1].parameters())
    assert not any(m.training for m in backbone.modules() if isinstance(m, _BatchNorm))
    before = copy.deepcopy(backbone.state_dict())
    opt = torch.optim.SGD([p for p in backbone.parameters() if p.requires_grad], lr=0.1)
    feats = backbone(torch.randn(2, 3, 64, 64))
    assert [f.shape[1] for f in feats] == [80, 320]
    sum(f.mean() for f in feats).backward()
    opt.step()
    after = backbone.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and not any(k.startswith(('stem.', 'stages.0.')) or 'running' in k for k in changed)
    assert 'stages.1.downsample.token_mixer.conv_s.conv_3_3.weight' in changed


# ---- tools ---------------------------------------------------------------------------------
def test_reparameterize_keeps_the_rest_and_refuses_bad_input(tmp_path, capsys):
    trained = set_reference_weights(RepNeXtBackbone('m0'))
    detector_checkpoint(tmp_path / 'trained.pth', trained)
    out = tmp_path / 'deploy.pth'
    assert reparameterize.main([str(tmp_path / 'trained.pth'), str(out)]) == 0
    written = torch.load(out)
    assert 'optimizer' not in written and written['meta']['epoch'] == 1
    assert written['meta']['reparameterized']['arch'] == 'm0'
    assert written['meta']['reparameterized']['dropped'] == ['optimizer']
    assert 'neck.lateral_convs.0.conv.weight' in written['state_dict']
    assert 'deploy vs training max relative error' in capsys.readouterr().out

    torch.save({'state_dict': {'neck.w': torch.zeros(1)}}, tmp_path / 'no_backbone.pth')
    cases = [
        ([str(tmp_path / 'trained.pth'), str(out)], f'{out} already exists; pass --force'),
        ([str(out), str(tmp_path / 'again.pth')], 'the backbone is already in the deploy form (RepNeXt-m0)'),
        ([str(tmp_path / 'no_backbone.pth'), str(tmp_path / 'x.pth')], 'has no backbone.* weights'),
    ]
    for argv, message in cases:
        assert reparameterize.main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / 'again.pth').exists() and not (tmp_path / 'x.pth').exists()


def test_converter_training_and_deploy_outputs_load_into_deploy_backbone(tmp_path, capsys):
    from mm_efficient_backbones.tools.convert_to_backbone_weights import main as convert
    classifier = set_reference_weights(timm.create_model('repnext_m0'))
    torch.save({'model': classifier.state_dict()}, tmp_path / 'release.pth')
    for options, tensors in (([], 657), (['--deploy'], 196)):  # heads dropped, strict verify
        assert convert(['--model', 'repnext_m0', '--checkpoint', str(tmp_path / 'release.pth'),
                        '--output-dir', str(tmp_path), '--verify', *options]) == 0
        assert f'ok: {tensors} tensors' in capsys.readouterr().out
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        want = classifier.eval().forward_features(x)
    # deploy=True loads the deploy file as it is, and collapses a training-form release.
    for path in (tmp_path / 'repnext_m0_backbone_deploy.pth', tmp_path / 'release.pth'):
        deployed = RepNeXtBackbone('m0', deploy=True)
        result = deployed.load_pretrained(str(path))  # what init_cfg=dict(type='Pretrained') runs
        assert result['missing'] == [] and result['unexpected'] == []
        assert max_relative_error([want], [features(deployed, x)[-1]]) < 1e-4


def test_demo_training_iteration_then_deploy_segmentor_equals_it(demo_data, tmp_path):
    """One mmseg training iteration of RepNeXt-M0 (multi-branch); its checkpoint
    reparameterised; the segmentor built with deploy=True and loaded from that file
    gives the trained segmentor's logits."""
    pytest.importorskip('mmseg')
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmengine.runner import load_checkpoint
    from mmseg.registry import MODELS

    from mm_efficient_backbones import segmentation  # noqa: F401
    from test_mm import ROOT, demo_options, run_tool, scalars
    config, work = 'configs/demo/repnext_m0_demo_ade.py', tmp_path / 'work'
    result = run_tool('tools/train.py', config, '--work-dir', str(work), *demo_options(
        demo_data, 'seg', 'train_cfg.max_iters=1', 'train_cfg.val_interval=100',
        'default_hooks.logger.interval=1', 'default_hooks.checkpoint.interval=1'))
    assert result.returncode == 0, result.stderr[-3000:]
    assert any('loss' in r and r.get('iter') == 1 for r in scalars(work))
    deploy = tmp_path / 'deploy.pth'
    assert reparameterize.main([str(work / 'iter_1.pth'), str(deploy)]) == 0

    cfg = Config.fromfile(str(ROOT / config))
    init_default_scope(cfg.default_scope)
    x = torch.randn(1, 3, 67, 93)
    logits = []
    for checkpoint, deploy_form in ((work / 'iter_1.pth', False), (deploy, True)):
        cfg.model.backbone.deploy = deploy_form
        model = MODELS.build(cfg.model).eval()
        load_checkpoint(model, str(checkpoint), map_location='cpu', strict=True)
        with torch.no_grad():
            logits.append(model(x, mode='tensor'))
    assert model.backbone.fused and not any(isinstance(m, _BatchNorm) for m in model.backbone.modules())
    assert max_relative_error(logits[:1], logits[1:]) < 1e-4
