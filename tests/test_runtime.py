"""The narrow run-time fixes in mm_common.runtime."""
import os
import pickle

import pytest
import torch
from mmengine.config import Config
from mmengine.logging import HistoryBuffer, MessageHub

from mm_efficient_backbones.mm_common.runtime import _replace_norm, allow_mmengine_checkpoints, configure_launch, one_line


class GetattrOnHistoryBuffer:
    """Pickles as getattr(HistoryBuffer, name): only the statistics methods may load."""

    def __init__(self, name):
        self.name = name

    def __reduce__(self):
        return getattr, (HistoryBuffer, self.name)


def test_mmengine_checkpoint_loads_with_weights_only(tmp_path):
    hub = MessageHub.get_instance('test_runtime')
    for loss in (1.0, 0.5):
        hub.update_scalar('train/loss', loss)
    path = tmp_path / 'iter_2.pth'
    torch.save({'meta': {'iter': 2}, 'state_dict': {'w': torch.ones(2)},
                'message_hub': hub.state_dict()}, path)
    allow_mmengine_checkpoints()
    checkpoint = torch.load(path)  # weights_only=True, the torch >= 2.6 default
    assert checkpoint['message_hub']['log_scalars']['train/loss'].mean() == pytest.approx(0.75)


def test_weights_only_check_stays_on_for_everything_else(tmp_path):
    allow_mmengine_checkpoints()
    torch.save({'call': os.system}, tmp_path / 'code.pth')
    with pytest.raises(pickle.UnpicklingError):
        torch.load(tmp_path / 'code.pth')
    torch.save({'ok': GetattrOnHistoryBuffer('mean')}, tmp_path / 'mean.pth')
    assert torch.load(tmp_path / 'mean.pth')['ok'] is HistoryBuffer.mean
    torch.save({'attr': GetattrOnHistoryBuffer('__init__')}, tmp_path / 'attr.pth')
    with pytest.raises(pickle.UnpicklingError, match='is not allowed'):
        torch.load(tmp_path / 'attr.pth')


def test_syncbn_becomes_bn_everywhere_in_a_config():
    cfg = dict(model=dict(decode_head=dict(norm_cfg=dict(type='SyncBN', requires_grad=True)),
                          auxiliary_head=[dict(norm_cfg=dict(type='SyncBN')), dict(norm_cfg=dict(type='GN'))]))
    assert _replace_norm(cfg, 'SyncBN', 'BN') == 2
    assert cfg['model']['decode_head']['norm_cfg']['type'] == 'BN'
    assert [h['norm_cfg']['type'] for h in cfg['model']['auxiliary_head']] == ['BN', 'GN']


def test_single_process_launch_leaves_the_config_alone():
    cfg = Config(dict(model=dict(norm_cfg=dict(type='SyncBN'))))
    assert configure_launch(cfg, 'none') == 'single process'
    assert cfg.model.norm_cfg.type == 'SyncBN'  # mmengine reverts it to BN itself
    assert 'sync_bn' not in cfg


def test_one_line_drops_registry_prefixes():
    err = ValueError("class `MaskRCNN` in mmdet/models/detectors/mask_rcnn.py: class `RecNeXtBackbone` "
                     "in backbones/recnext.py: unknown RecNeXt arch 'm9'\nmore")
    assert one_line(err) == "unknown RecNeXt arch 'm9'"


def test_sync_bn_conversion_keeps_timm_norm_activations():
    """Multi-GPU runs convert BN to SyncBN; a timm BatchNormAct2d must keep its activation. (Our
    families hold none: tests/test_rexnet.py runs mmengine's own converter on ReXNet. A timm
    model through TimmFeaturesBackbone may: timm's own RexNet class here.)"""
    import mmengine.runner.runner as runner_module
    from timm.layers import BatchNormAct2d
    from timm.layers.norm_act import SyncBatchNormAct
    from timm.models.rexnet import RexNet

    from mm_efficient_backbones.mm_common.runtime import keep_norm_activations_in_sync_bn, sync_batchnorm_keeping_activations

    torch.manual_seed(0)
    backbone = RexNet(width_mult=1.0).eval()
    norm_acts = sum(isinstance(m, BatchNormAct2d) for m in backbone.modules())
    x = torch.randn(1, 3, 64, 80)
    with torch.no_grad():
        expected = backbone(x)
        converted = sync_batchnorm_keeping_activations(backbone).eval()
        got = converted(x)  # eval mode needs no process group
    assert norm_acts > 0 and sum(isinstance(m, SyncBatchNormAct) for m in converted.modules()) == norm_acts
    assert not any(type(m) is torch.nn.BatchNorm2d for m in converted.modules())
    assert all(torch.equal(a, b) for a, b in zip(expected, got))

    original = runner_module.convert_sync_batchnorm
    try:
        keep_norm_activations_in_sync_bn()
        assert runner_module.convert_sync_batchnorm is sync_batchnorm_keeping_activations
    finally:
        runner_module.convert_sync_batchnorm = original
