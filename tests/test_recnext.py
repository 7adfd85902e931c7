"""RecNeXt-M: checkpoint-format parity, shapes, fusion, freezing and pretrained loading."""
import pytest
import timm
import torch
from torch import nn

from mm_efficient_backbones import backbones
from mm_efficient_backbones.backbones import BackboneConfigError, CheckpointError, RecNeXtBackbone
from conftest import reference_shapes

ARCHS = ['m0', 'm1', 'm2', 'm3', 'm4', 'm5']


def randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BN statistics and affine params, so fusion errors would show."""
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=gen) * 0.5 + 0.75)
            m.weight.data.copy_(torch.rand(n, generator=gen) * 0.5 + 0.75)
            m.bias.data.copy_(torch.randn(n, generator=gen) * 0.1)
    return model


@pytest.mark.parametrize('arch', ARCHS)
def test_state_dict_matches_reference(arch):
    model = timm.create_model(f'recnext_{arch}')
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    want = reference_shapes(f'recnext_{arch}')
    assert sorted(set(got) ^ set(want)) == []
    assert {k: s for k, s in got.items() if want[k] != s} == {}


def test_published_checkpoint_loads_strict(tmp_path):
    want = reference_shapes('recnext_m0')
    state = {k: torch.randn(s) if s else torch.tensor(0) for k, s in want.items()}
    model = timm.create_model('recnext_m0')
    model.load_state_dict(state, strict=True)


def test_default_drop_path_follows_recipe():
    def rates(model):
        return {round(block.drop_path.drop_prob, 6) if hasattr(block.drop_path, 'drop_prob') else 0.0
                for stage in model.stages for block in stage.blocks}
    with torch.device('meta'):
        assert rates(timm.create_model('recnext_m3')) == {0.0}
        # The authors' schedule: one rate for every block, and none for the distilled models.
        assert rates(timm.create_model('recnext_m4')) == {0.2}
        assert rates(timm.create_model('recnext_m5')) == {0.3}
        assert rates(timm.create_model('recnext_m5', distillation=True)) == {0.0}
        assert rates(RecNeXtBackbone('m3', drop_path_rate=0.1)) == {0.1}


def test_timm_features_only_odd_input():
    model = timm.create_model('recnext_m0', features_only=True).eval()
    feats = model(torch.randn(1, 3, 225, 337))
    assert model.feature_info.reduction() == [4, 8, 16, 32]
    assert model.feature_info.channels() == [40, 80, 160, 320]
    assert [tuple(f.shape[-2:]) for f in feats] == [(57, 85), (29, 43), (15, 22), (8, 11)]


@pytest.mark.parametrize('size', [(225, 337), (64, 64), (33, 47)])
def test_backbone_feature_shapes_and_strides(size):
    backbone = RecNeXtBackbone('m1').eval()
    with torch.no_grad():
        feats = backbone(torch.randn(2, 3, *size))
    assert len(feats) == 4
    assert [f.shape[1] for f in feats] == [48, 96, 192, 384] == backbone.out_channels
    assert [i['reduction'] for i in backbone.feature_info] == [4, 8, 16, 32]
    h, w = size
    for f, stride in zip(feats, (4, 8, 16, 32)):
        # Each stride-2 conv (kernel 3 or 7, 'same' padding) rounds up.
        expect = (h, w)
        for _ in range(stride.bit_length() - 1):
            expect = ((expect[0] + 1) // 2, (expect[1] + 1) // 2)
        assert tuple(f.shape[-2:]) == expect


def test_out_indices_subset():
    backbone = RecNeXtBackbone('m0', out_indices=(1, 3)).eval()
    feats = backbone(torch.randn(1, 3, 64, 64))
    assert [f.shape[1] for f in feats] == [80, 320]


@pytest.mark.parametrize('arch', ['m0', 'm3'])
def test_fused_classifier_equals_unfused(arch):
    torch.manual_seed(0)
    model = randomize_bn(timm.create_model(f'recnext_{arch}')).eval()
    x = torch.randn(2, 3, 96, 160)
    with torch.no_grad():
        before = model(x)
        model.fuse()
        after = model(x)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    assert isinstance(model.head, nn.Linear)  # the two heads merged into one
    assert (before - after).abs().max().item() < 1e-4


def test_deploy_backbone_equals_training_form():
    torch.manual_seed(0)
    trained = randomize_bn(RecNeXtBackbone('m0')).eval()
    deployed = RecNeXtBackbone('m0', deploy=True)
    deployed.load_state_dict(trained.state_dict())
    deployed.eval()
    x = torch.randn(1, 3, 97, 131)
    with torch.no_grad():
        want, got = trained(x), deployed(x)
    assert deployed.fused
    for a, b in zip(want, got):
        assert (a - b).abs().max().item() < 1e-4
    with pytest.raises(RuntimeError, match='inference only'):
        deployed.train()(x)


def test_frozen_stages_and_norm_eval_really_freeze():
    torch.manual_seed(0)
    backbone = RecNeXtBackbone('m0', frozen_stages=1, norm_eval=True)
    backbone.train()
    frozen = list(backbone.stem.parameters()) + list(backbone.stages[0].parameters())
    assert frozen and all(not p.requires_grad for p in frozen)
    assert all(p.requires_grad for p in backbone.stages[1].parameters())
    bns = [m for m in backbone.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(not m.training for m in bns)
    # SyncBN too: norm_eval must match it, not only nn.BatchNorm2d.
    synced = nn.SyncBatchNorm.convert_sync_batchnorm(backbone).train()
    assert all(not m.training for m in synced.modules() if isinstance(m, nn.SyncBatchNorm))

    backbone = RecNeXtBackbone('m0', frozen_stages=1, norm_eval=True).train()
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    opt = torch.optim.SGD([p for p in backbone.parameters() if p.requires_grad], lr=0.1)
    sum(f.mean() for f in backbone(torch.randn(2, 3, 64, 64))).backward()
    opt.step()
    after = backbone.state_dict()
    for key, value in before.items():
        if key.startswith(('stem.', 'stages.0.')) or 'running' in key:
            assert torch.equal(value, after[key]), f'{key} changed'
    assert not torch.equal(before['stages.1.downsample.token_mixer.weight'],
                           after['stages.1.downsample.token_mixer.weight'])


def test_without_norm_eval_bn_trains():
    backbone = RecNeXtBackbone('m0', frozen_stages=0).train()
    assert backbone.stages[0].blocks[0].norm.training
    assert not backbone.stem.stem[0].norm.training


def test_unknown_arch_lists_valid_ones():
    with pytest.raises(BackboneConfigError,
                       match=r"unknown RecNeXt arch 'm9': choose one of m0, m1, m2, m3, m4, m5, a0, a1, a2, a3, a4, a5$"):
        RecNeXtBackbone('m9')


def save_classifier(tmp_path, arch='m0', wrapper='model', name='cls.pth'):
    torch.manual_seed(1)
    model = randomize_bn(timm.create_model(f'recnext_{arch}'))
    path = tmp_path / name
    torch.save({wrapper: model.state_dict()} if wrapper else model.state_dict(), path)
    return model, path


@pytest.mark.parametrize('wrapper', ['model', 'state_dict', 'model_ema', None])
def test_pretrained_classifier_checkpoint(tmp_path, wrapper, caplog):
    classifier, path = save_classifier(tmp_path, wrapper=wrapper)
    backbone = RecNeXtBackbone('m0', init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    with caplog.at_level('INFO', logger='backbones'):
        backbone.init_weights()
    assert 'dropped classifier keys: 14' in caplog.text
    classifier.eval(), backbone.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(backbone(x)[-1], classifier.forward_features(x))


def test_pretrained_errors(tmp_path):
    missing = RecNeXtBackbone('m0', init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'nope.pth')))
    with pytest.raises(CheckpointError, match='checkpoint not found: .*nope.pth'):
        missing.init_weights()

    torch.save({'model': {'features.0.weight': torch.zeros(3)}}, tmp_path / 'other.pth')
    other = RecNeXtBackbone('m0', init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'other.pth')))
    with pytest.raises(CheckpointError, match='no keys match RecNeXt-m0'):
        other.init_weights()

    _, path = save_classifier(tmp_path, arch='m2')
    wrong_arch = RecNeXtBackbone('m0', init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    with pytest.raises(CheckpointError, match='stem.stem.0.conv.weight has shape .* another RecNeXt arch'):
        wrong_arch.init_weights()

    (tmp_path / 'junk.pth').write_text('not a checkpoint')
    junk = RecNeXtBackbone('m0', init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'junk.pth')))
    with pytest.raises(CheckpointError, match='is not a torch checkpoint'):
        junk.init_weights()


def test_mm_backbone_registry_table():
    assert backbones.MM_BACKBONES['RecNeXt'] is RecNeXtBackbone


def test_pickled_objects_need_trust(tmp_path):
    import argparse
    path = tmp_path / 'pickled.pth'
    torch.save({'model': timm.create_model('recnext_m0').state_dict(),
                'args': argparse.Namespace(lr=0.1)}, path)
    backbone = RecNeXtBackbone('m0', init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    with pytest.raises(CheckpointError, match=r'arbitrary objects \(argparse.Namespace\).*--trust-checkpoint'):
        backbone.init_weights()


def test_params_and_macs_match_the_paper():
    """The README's model table: deploy-form params and MACs at 224 vs the paper."""
    from mm_efficient_backbones.backbones.benchmarking.counting import count_macs, count_params
    from mm_efficient_backbones.backbones.benchmarking import PUBLISHED
    for name in (f'recnext_{arch}' for arch in ARCHS):
        paper_params, paper_macs = (float(PUBLISHED[name][key]) for key in ('params', 'macs'))
        model = timm.create_model(name).eval().fuse()
        # The paper rounds to one decimal (e.g. 6.85M is printed as 6.8M).
        assert count_params(model) / 1e6 == pytest.approx(paper_params, abs=0.06), name
        assert count_macs(model, 224) / 1e9 == pytest.approx(paper_macs, abs=0.06), name


def test_matches_authors_reference_outputs():
    """The authors' code, on the README's seeded weights, unfused and fused (odd 97x131 input too)."""
    from conftest import assert_matches_reference, load_reference, set_reference_weights
    reference = load_reference('recnext_m3')
    model = set_reference_weights(timm.create_model('recnext_m3'))
    assert list(model.state_dict()) == list(reference['keys'])
    assert_matches_reference(model, reference)
    assert_matches_reference(model.fuse(), reference)
