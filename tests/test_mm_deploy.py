"""mmdeploy on this stack (mm_common/deploy.py): each compatibility fix, and one detector and
one segmentor exported, run in ONNX Runtime and OpenVINO, and checked on demo val images."""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import ROOT, demo_config_file, onnx_of



# ---- the fixes, one by one ---------------------------------------------------------------
def test_torch_onnx_export_uses_torchscript_inside_the_block_only():
    from mm_efficient_backbones.mm_common import deploy
    original = torch.onnx.export
    with deploy.torchscript_onnx_export():
        assert torch.onnx.export.keywords == {'dynamo': False}
        assert torch.onnx.export.func is original
    assert torch.onnx.export is original


def test_cast_long_symbolic_is_back_and_exports_an_int64_cast(tmp_path):
    import onnx
    import onnxruntime

    from mm_efficient_backbones.mm_common import deploy
    deploy.add_cast_long_symbolic()
    from torch.onnx.symbolic_opset9 import _cast_Long  # what mmdeploy's RoIAlign symbolic imports

    class ToLong(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x.long()

        @staticmethod
        def symbolic(g, x):
            return _cast_Long(g, x, False)

    class Model(torch.nn.Module):
        def forward(self, x):
            return ToLong.apply(x * 2)

    path = onnx_of(Model(), torch.tensor([1.0, 2.5]), tmp_path / 'cast.onnx', input_names=['x'])
    casts = [node for node in onnx.load(path).graph.node if node.op_type == 'Cast']
    assert [attribute.i for attribute in casts[0].attribute] == [onnx.TensorProto.INT64]
    out = onnxruntime.InferenceSession(path).run(None, {'x': np.array([1.0, 2.5], np.float32)})[0]
    assert out.dtype == np.int64 and out.tolist() == [2, 5]
    assert deploy.add_cast_long_symbolic() is False  # idempotent


def test_recnext_traces_the_standard_ops_while_exporting(tmp_path):
    """The oneDNN fast path stands aside by itself under the TorchScript exporter mmdeploy uses."""
    import onnx
    import onnxruntime

    from mm_efficient_backbones.backbones import MM_BACKBONES
    from mm_efficient_backbones.backbones.models import recnext
    from mm_efficient_backbones.mm_common import deploy
    model = MM_BACKBONES['RecNeXt'](arch='m0', out_indices=(3,)).eval().switch_to_deploy()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        expected = model(x)[0]
        assert recnext._onednn_fusion(x) is True  # eager CPU fp32 inference: the fast path
        with deploy.exporting():
            path = onnx_of(model, x, tmp_path / 'm0.onnx', input_names=['input'])
    ops = {node.op_type for node in onnx.load(path).graph.node}
    assert 'Conv' in ops and not any('mkldnn' in op or 'ATen' in op for op in ops), ops
    got = onnxruntime.InferenceSession(path).run(None, {'input': x.numpy()})[0]
    assert np.abs(got - expected.numpy()).max() / np.abs(expected.numpy()).max() < 1e-4


def _tiny_onnx(tmp_path):
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU()).eval()
    x = torch.randn(1, 3, 8, 8)
    path = onnx_of(model, x, tmp_path / 'tiny.onnx', input_names=['input'], output_names=['output'])
    with torch.no_grad():
        return path, x, model(x)


def test_openvino_manager_builds_an_fp32_core_wrapper(tmp_path):
    import openvino

    from mm_efficient_backbones.mm_common import deploy
    deploy.install_mmdeploy_fixes()
    from mmdeploy.backend.base import get_backend_manager
    path, x, expected = _tiny_onnx(tmp_path)
    xml = deploy._convert_openvino(path)[0]
    ov = get_backend_manager('openvino').build_wrapper([xml], 'cpu', ['input'], ['output'],
                                                      dict(backend_config=dict(type='openvino')))
    assert ov.compiled.get_property('INFERENCE_PRECISION_HINT') == openvino.Type.f32
    assert torch.allclose(ov({'input': x})['output'], expected, atol=1e-5)


# ---- detector and segmentor, end to end ------------------------------------------------------
@pytest.fixture(scope='module')
def trained(demo_data, tmp_path_factory):
    """{task: (config, checkpoint)}: each demo model trained briefly with tools/train.py."""
    work = tmp_path_factory.mktemp('deploy')
    runs = {'det': ('train_cfg.max_epochs=1', 'train_dataloader.dataset.indices=16', 'epoch_1.pth'),
            'seg': ('train_cfg.max_iters=6', 'iter_6.pth')}
    out = {}
    for task, (*options, checkpoint) in runs.items():
        config = demo_config_file(demo_data, work, task)
        result = subprocess.run(
            [sys.executable, 'tools/train.py', config, '--work-dir', str(work / task), '--cfg-options',
             'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
             'val_dataloader.num_workers=0', 'val_dataloader.persistent_workers=False',
             'test_dataloader.num_workers=0', 'test_dataloader.persistent_workers=False',
             'train_cfg.val_interval=100', 'train_cfg.val_begin=100', f'default_hooks.checkpoint.interval={1 if task == "det" else 6}',
             *options], cwd=ROOT, capture_output=True, text=True, timeout=900,
            env=dict(os.environ, OMP_NUM_THREADS='1'))
        assert result.returncode == 0, result.stderr[-3000:]
        out[task] = (config, str(work / task / checkpoint))
    return out


@pytest.mark.parametrize('task,backends', [('det', ['onnxruntime', 'openvino']), ('seg', ['openvino'])])
def test_export_is_checked_on_demo_val_images_then_written(trained, tmp_path, task, backends):
    from mm_efficient_backbones.mm_common import deploy
    config, checkpoint = trained[task]
    results = deploy.export_mm_model(config, checkpoint, backends, str(tmp_path / 'out'), indices=4)
    assert sorted(results) == sorted(backends)
    metrics = ('bbox_mAP', 'segm_mAP') if task == 'det' else ('mIoU',)
    for backend, result in results.items():
        assert sorted(result['metrics']['pytorch']) == sorted(metrics)
        for key in metrics:
            assert abs(result['metrics'][backend][key] - result['metrics']['pytorch'][key]) <= deploy.TOLERANCES[key]
    # One PyTorch evaluation serves every backend.
    assert len({id(result['metrics']['pytorch']) for result in results.values()}) == 1
    names = {'onnxruntime': ['end2end.onnx'], 'openvino': ['end2end.bin', 'end2end.xml']}
    assert sorted(os.listdir(tmp_path / 'out')) == sorted(backends)
    for backend in backends:
        assert sorted(os.listdir(tmp_path / 'out' / backend)) == names[backend]
    assert [f for f in os.listdir(tmp_path) if f.startswith('.export-')] == []
    if task == 'seg':
        assert results['openvino']['metrics']['pytorch']['mIoU'] > 0
    else:
        # Standard ops only: mmdeploy's RoIAlign symbolic (through mmcv's layout-safe
        # RoIAlignFunction, mm_common/layout.py) gives ONNX's RoiAlign, no custom domain.
        import onnx
        nodes = onnx.load(results['onnxruntime']['files'][0]).graph.node
        assert {'RoiAlign', 'NonMaxSuppression', 'Conv'} <= {node.op_type for node in nodes}
        assert {node.domain for node in nodes} <= {'', 'ai.onnx'}
    # Beyond the metric: each runtime's predictions on one val image are PyTorch's.
    from mmengine.registry import init_default_scope
    cfg = deploy.load_model_config(config)
    init_default_scope(cfg.default_scope)
    data = next(iter(deploy._val_dataloader(cfg, 1)))
    pytorch_model = deploy.build_pytorch_model(cfg, checkpoint)
    with torch.no_grad():
        expected = pytorch_model.test_step(data)[0]
    for backend, result in results.items():
        with torch.no_grad():
            got = deploy.build_backend_model(cfg, backend, result['files']).test_step(data)[0]
        if task == 'seg':
            agree = (got.pred_sem_seg.data == expected.pred_sem_seg.data).float().mean().item()
            assert agree > 0.999, (backend, agree)
        else:
            top = min(5, len(expected.pred_instances))
            assert top > 0
            assert torch.allclose(got.pred_instances.scores[:top], expected.pred_instances.scores[:top], atol=1e-3)
            assert torch.allclose(got.pred_instances.bboxes[:top], expected.pred_instances.bboxes[:top], atol=0.1)
    if task == 'seg':  # benchmark --exported times what was written, without exporting again
        from mm_efficient_backbones.tools import benchmark
        row = deploy.benchmark_test_forward(config, checkpoint, ['torch', *backends], images=2, rounds=1,
                                            exported_dir=str(tmp_path / 'out'))
        assert sorted(row['ms_per_image']) == sorted(['torch', 'torch-deploy', *backends]) and not row['checks']
        assert benchmark.main(['--no-models', '--runtime', 'onnxruntime', '--test-forward', config, checkpoint,
                               '--exported', str(tmp_path / 'out')]) == 2  # only openvino was exported


def test_benchmark_times_the_test_time_forward_in_each_runtime(trained, tmp_path, capsys):
    """benchmark --test-forward: exported, checked on the timed images, then timed beside eager."""
    import json

    from mm_efficient_backbones.tools import benchmark
    config, checkpoint = trained['seg']
    out = tmp_path / 'forward.json'
    assert benchmark.main(['--no-models', '--runtime', 'torch', 'onnxruntime', 'openvino', '--repeats', '1',
                           '--test-forward', config, checkpoint, '--test-forward-images', '2',
                           '--json', str(out)]) == 0
    (row,) = json.loads(out.read_text())['test_forward']
    assert sorted(row['ms_per_image']) == ['onnxruntime', 'openvino', 'torch', 'torch-deploy']
    assert min(row['ms_per_image'].values()) > 0 and row['speedup']['torch'] == 1.0
    for backend in ('onnxruntime', 'openvino'):
        assert abs(row['checks'][backend]['differences']['mIoU']) <= 0.5
    assert row['fastest_fp32']['form'] == min(row['ms_per_image'], key=row['ms_per_image'].get)
    printed = capsys.readouterr().out
    assert 'onnxruntime (fp32) mIoU' in printed and 'test-time forward, ms/image: torch ' in printed


def test_an_export_that_differs_is_refused_and_writes_nothing(trained, tmp_path, monkeypatch):
    from mm_efficient_backbones.mm_common import deploy
    config, checkpoint = trained['seg']
    real_build = deploy.build_backend_model

    def off_by_one_class_in_openvino(cfg, backend, files):
        model = real_build(cfg, backend, files)
        if backend == 'openvino':
            forward = model.wrapper.forward
            model.wrapper.forward = lambda inputs: {k: (v + 1) % 4 for k, v in forward(inputs).items()}
        return model
    monkeypatch.setattr(deploy, 'build_backend_model', off_by_one_class_in_openvino)
    out = tmp_path / 'out'
    with pytest.raises(deploy.ExportCheckError, match=r'openvino export .* differs from PyTorch: mIoU .*'
                       r'nothing written for openvino \(onnxruntime written to '):
        deploy.export_mm_model(config, checkpoint, ['onnxruntime', 'openvino'], str(out), indices=2)
    # The backend that agrees is written; the one that differs leaves nothing, nor does the work dir.
    assert os.listdir(tmp_path) == ['out'] and os.listdir(out) == ['onnxruntime']
    assert os.listdir(out / 'onnxruntime') == ['end2end.onnx']


def test_bad_input_is_one_line(trained, tmp_path, capsys):
    from mm_efficient_backbones.mm_common import deploy
    from mm_efficient_backbones.tools import export as export_tool
    det_config, det_checkpoint = trained['det']
    seg_config, seg_checkpoint = trained['seg']
    cases = [((det_config, seg_checkpoint), 'does not fit MaskRCNN'),
             ((det_config, str(tmp_path / 'none.pth')), 'checkpoint not found'),
             ((str(tmp_path / 'none.py'), det_checkpoint), 'config not found')]
    for args, message in cases:
        assert export_tool.main([*args, '--format', 'onnx', '--out', str(tmp_path / 'out')]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith('export: error: ') and message in err[0], err
        assert not (tmp_path / 'out').exists()
    with pytest.raises(deploy.UserError, match='unsupported backend .tensorrt.'):
        deploy.export_mm_model(det_config, det_checkpoint, 'tensorrt', str(tmp_path / 'out'))
    assert not (tmp_path / 'out').exists()
