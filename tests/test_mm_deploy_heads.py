"""mmdeploy's rewriters that this project replaces (mm_common/deploy.py), end to end on
demo-sized models with random weights: UPerNet's pyramid pooling, exact at every size, and
Cascade R-CNN with class-specific boxes; Faster R-CNN (mmdeploy's detection task) beside it."""
import numpy as np
import pytest
import torch

from conftest import ROOT, demo_config_file, onnx_of


def test_exact_adaptive_pooling_is_torch_s_at_every_size_and_exports_dynamic(tmp_path):
    """mmdeploy's default turns adaptive pooling into a fixed-kernel avg_pool; ours is exact at
    every size, smaller than the output included, eager and in ONNX Runtime from one graph."""
    import onnxruntime

    from mm_efficient_backbones.mm_common import deploy
    for height, width in [(13, 17), (6, 6), (3, 5), (1, 1), (32, 20)]:
        x = torch.randn(2, 4, height, width)
        for size in (1, 2, 3, 6, (2, 5)):
            expected = torch.nn.functional.adaptive_avg_pool2d(x, size)
            assert torch.allclose(deploy.exact_adaptive_avg_pool2d(x, size), expected, atol=1e-6), (height, width)

    class Pyramid(torch.nn.Module):
        def forward(self, x):
            return torch.cat([deploy.exact_adaptive_avg_pool2d(x, size).flatten(1) for size in (2, 3, 6)], 1)
    path = onnx_of(Pyramid(), torch.randn(1, 4, 24, 24), tmp_path / 'ppm.onnx', input_names=['x'],
                   dynamic_axes={'x': {0: 'batch', 2: 'height', 3: 'width'}})
    session = onnxruntime.InferenceSession(path)
    for shape in [(1, 4, 24, 24), (2, 4, 13, 17), (1, 4, 4, 5)]:
        x = torch.randn(shape)
        got = session.run(None, {'x': x.numpy()})[0]
        assert np.abs(got - Pyramid()(x).numpy()).max() < 1e-5, shape


def _random_checkpoint(cfg, tmp_path, name):
    """``cfg`` written as a config file, and its model's random init (seed 0) as a checkpoint."""
    from mmengine.registry import MODELS, init_default_scope
    cfg.model.backbone.pop('init_cfg', None)
    config = str(tmp_path / f'{name}.py')
    cfg.dump(config)
    init_default_scope(cfg.default_scope)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    torch.save({'state_dict': model.eval().state_dict()}, str(tmp_path / f'{name}.pth'))
    return config, str(tmp_path / f'{name}.pth')


def test_upernet_exports_exactly_at_every_size(demo_data, tmp_path):
    """UPerNet's pyramid pooling through mmdeploy: the graph traced on a 128x128 demo image
    gives PyTorch's labels at other sizes too, including one where the last feature map is
    smaller than the largest pool scale."""
    from mmengine.config import Config

    from mm_efficient_backbones.mm_common import deploy
    cfg = Config.fromfile(demo_config_file(demo_data, tmp_path, 'seg'))
    cfg.model.decode_head = dict(type='UPerHead', in_channels=[40, 80, 160, 320], in_index=[0, 1, 2, 3],
                                 pool_scales=(1, 2, 3, 6), channels=32, num_classes=4,
                                 norm_cfg=dict(type='BN', requires_grad=True), align_corners=False)
    cfg.model.pop('auxiliary_head', None)
    cfg.model.pop('neck', None)  # UPerNet takes the backbone's stages
    config, checkpoint = _random_checkpoint(cfg, tmp_path, 'upernet')
    results = deploy.export_mm_model(config, checkpoint, ['onnxruntime', 'openvino'], str(tmp_path / 'out'),
                                     indices=2)
    pytorch_model = deploy.build_pytorch_model(deploy.load_model_config(config), checkpoint)
    for backend, result in results.items():
        wrapper = deploy.build_backend_model(cfg, backend, result['files']).wrapper
        for height, width in [(128, 128), (96, 160), (100, 164)]:
            x = torch.randn(1, 3, height, width)
            meta = dict(img_shape=(height, width), pad_shape=(height, width), ori_shape=(height, width))
            with torch.no_grad():
                expected = pytorch_model.encode_decode(x, [meta]).argmax(1)
            got = wrapper({'input': x})['output'].reshape(expected.shape)
            agree = (got == expected).float().mean().item()
            assert agree > 0.999, (backend, height, width, agree)


def _cascade(cfg):
    """The demo detector as Cascade Mask R-CNN with class-specific boxes (our ConvNeXt-1D
    configs' heads, narrowed to the demo)."""
    from mmengine.config import Config
    cascade = Config.fromfile(str(ROOT / 'configs/convnext1d_tiny_1d_coco.py')).model.roi_head
    channels = cfg.model.neck.out_channels
    for stage in cascade.bbox_head:
        assert stage.reg_class_agnostic is False
        stage.update(type='Shared2FCBBoxHead', in_channels=channels, fc_out_channels=64, num_classes=3)
        for key in ('conv_out_channels', 'norm_cfg', 'num_shared_convs', 'num_shared_fcs'):
            stage.pop(key, None)
    cascade.bbox_roi_extractor.out_channels = channels
    cascade.mask_roi_extractor.out_channels = channels
    cascade.mask_head.update(in_channels=channels, conv_out_channels=channels, num_convs=1, num_classes=3)
    cfg.model.type = 'CascadeRCNN'
    cfg.model.roi_head = cascade
    cfg.model.train_cfg.rcnn = [cfg.model.train_cfg.rcnn] * 3


def _faster(cfg):
    """The demo detector without its mask head: Faster R-CNN (mmdeploy's detection task)."""
    cfg.model.type = 'FasterRCNN'
    for key in ('mask_roi_extractor', 'mask_head'):
        cfg.model.roi_head.pop(key)
    cfg.model.train_cfg.rcnn.pop('mask_size', None)
    cfg.test_evaluator.metric = cfg.val_evaluator.metric = 'bbox'


# OpenVINO reads the same graph as ONNX Runtime: one detector of the two is enough for it here.
@pytest.mark.parametrize('make,backends', [(_cascade, ['onnxruntime', 'openvino']), (_faster, ['onnxruntime'])],
                         ids=['cascade-class-specific', 'faster-rcnn'])
def test_other_detectors_export_with_pytorch_s_predictions(demo_data, tmp_path, make, backends):
    """Cascade Mask R-CNN with class-specific boxes (each refining stage keeps its top class's
    box) and Faster R-CNN: every runtime gives PyTorch's detections."""
    from mmengine.config import Config

    from mm_efficient_backbones.mm_common import deploy
    cfg = Config.fromfile(demo_config_file(demo_data, tmp_path, 'det'))
    make(cfg)
    config, checkpoint = _random_checkpoint(cfg, tmp_path, make.__name__)
    results = deploy.export_mm_model(config, checkpoint, backends, str(tmp_path / 'out'), indices=2)
    assert sorted(results) == backends
    cfg = deploy.load_model_config(config)
    assert deploy.deploy_task(cfg) == ('detection' if make is _faster else 'instance-seg')
    pytorch_model = deploy.build_pytorch_model(cfg, checkpoint)
    for data in deploy._val_dataloader(cfg, 2):
        with torch.no_grad():
            expected = pytorch_model.test_step(data)[0].pred_instances
        assert len(expected) > 0
        for backend, result in results.items():
            with torch.no_grad():
                got = deploy.build_backend_model(cfg, backend, result['files']).test_step(data)[0].pred_instances
            top = min(5, len(expected))
            assert torch.allclose(got.scores[:top], expected.scores[:top], atol=1e-3), backend
            assert torch.allclose(got.bboxes[:top], expected.bboxes[:top], atol=0.1), backend
            assert torch.equal(got.labels[:top], expected.labels[:top]), backend
