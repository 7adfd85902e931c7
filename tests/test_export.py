"""Export of the deploy forms (backbones/export.py, tools/export.py): the fast path stands
aside under tracing, every export is checked in its runtime before it is written, bad input
is one line, torch.compile of ConvNeXt-1D, and bf16 autocast training of every family."""
import sys
import types

import numpy as np
import pytest
import timm
import torch
from torch import nn

from mm_efficient_backbones.backbones import ConvNeXt1DBackbone, export
from mm_efficient_backbones.backbones.models import registry
from mm_efficient_backbones.backbones.models.specs import SpecError, deploy_form, resolve
from mm_efficient_backbones.tools import export as export_tool

pytest.importorskip('onnxscript')  # torch's dynamo exporter builds its graphs with it
ort = pytest.importorskip('onnxruntime')

SMALL = (1, 3, 64, 64)


def with_random_statistics(model: nn.Module) -> nn.Module:
    """BN statistics away from (0, 1), so that folding them is really tested."""
    torch.manual_seed(1)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.running_mean.normal_(0, 0.1)
            module.running_var.uniform_(0.75, 1.25)
    return model


def test_fast_path_stands_aside_under_tracing():
    """The TorchScript exporter failed on oneDNN's fused kernels (`unsupported input list type`)."""
    fused = timm.create_model('recnext_m0', num_classes=0).eval().fuse()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        traced = torch.jit.trace(fused, x)
        assert 'mkldnn' not in str(traced.inlined_graph)
        torch.testing.assert_close(traced(x), fused(x), rtol=1e-5, atol=1e-5)
        graph = torch.onnx.export(fused, (x,), dynamo=True, verbose=False).model_proto.graph
    assert {node.domain for node in graph.node} <= {'', 'ai.onnx'}


# ConvNeXt-1D (slow to export: its oriented convs' symbolic sizes) is tested dynamic, below.
@pytest.mark.parametrize('model', ['recnext_m0', 'recnext_a0', 'repnext_m0', 'rexnet_100', 'rexnet_lite_100'])
def test_onnx_export_of_a_classifier_equals_the_training_form(model, tmp_path, monkeypatch):
    built, targets = export.build_target, []

    def with_statistics(spec, checkpoint=None):
        target = built(spec, checkpoint)
        target.deploy = deploy_form(with_random_statistics(target.training))
        targets.append(target)
        return target
    monkeypatch.setattr(export, 'build_target', with_statistics)
    out = tmp_path / f'{model}.onnx'
    report = export.export_model(model, 'onnx', str(out), SMALL, log=lambda line: None)
    assert report['precision'] == 'fp32' and report['files'] == [str(out)]
    (check,) = report['checks']
    assert check['ok'] and check['difference'] <= 1e-4
    # The written file, run on its own, is the model's deploy form.
    session = ort.InferenceSession(str(out), providers=['CPUExecutionProvider'])
    x = torch.randn(*SMALL)
    (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    assert export.relative_difference([got], export.training_outputs(targets[0], x)) <= 1e-4
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]  # no temporary folder left


# ConvNeXt-1D's oriented conv is exported with dynamic sizes in test_oriented_conv.py; the
# whole model here at a fixed size (torch's symbolic-shape export of its 1dpp demo takes minutes).
@pytest.mark.parametrize('spec,fmt', [('RecNeXt:m0', 'onnx'), ('recnext_m0', 'openvino')])
def test_dynamic_export_is_checked_on_an_odd_shape(spec, fmt, tmp_path):
    if fmt == 'openvino':
        pytest.importorskip('openvino')
    suffix = '.xml' if fmt == 'openvino' else '.onnx'
    out = tmp_path / f'model{suffix}'
    report = export.export_model(spec, fmt, str(out), SMALL, dynamic=True, log=lambda line: None)
    assert [check['shape'] for check in report['checks']] == [SMALL, export.odd_shape(SMALL)]
    assert all(check['ok'] for check in report['checks'])
    assert export.odd_shape((1, 3, 224, 224)) == (2, 3, 193, 257)
    runner = export.load_runner(str(out), export.FORMATS[fmt], threads=1)
    assert runner.precision in ('fp32', 'f32')
    target = export.build_target(spec)
    x = torch.randn(3, 3, 41, 70)
    got, want = runner(x), export.training_outputs(target, x)
    assert [a.shape for a in got] == [b.shape for b in want]
    assert len(got) == (4 if ':' in spec else 1)
    assert export.relative_difference(got, want) <= 1e-4
    if fmt == 'openvino':
        assert (tmp_path / 'model.bin').is_file()


def test_convnext1d_backbone_exports_to_openvino_and_is_checked(tmp_path):
    pytest.importorskip('openvino')
    out = tmp_path / 'convnext1d.xml'
    report = export.export_model('ConvNeXt1D:demo:1dpp', 'openvino', str(out), SMALL, log=lambda line: None)
    assert [check['shape'] for check in report['checks']] == [SMALL] and report['checks'][0]['ok']
    runner = export.load_runner(str(out), 'openvino', threads=1)
    x = torch.randn(*SMALL)
    got, want = runner(x), export.training_outputs(export.build_target('ConvNeXt1D:demo:1dpp'), x)
    assert len(got) == 4 and export.relative_difference(got, want) <= 1e-4
    assert sorted(p.name for p in tmp_path.iterdir()) == ['convnext1d.bin', 'convnext1d.xml']


def run_tool(argv, capsys):
    code = export_tool.main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_a_check_that_fails_refuses_and_writes_nothing(tmp_path, monkeypatch, capsys):
    reference = export.training_outputs

    def perturbed(target, x):
        return [output * 1.01 for output in reference(target, x)]
    monkeypatch.setattr(export, 'training_outputs', perturbed)
    out = tmp_path / 'm0.onnx'
    code, stdout, err = run_tool(['recnext_m0', '--format', 'onnx', '--shape', '1x3x64x64', '--out', str(out)],
                                 capsys)
    assert code == 2 and err.count('\n') == 1 and err.startswith('export: error: recnext_m0 in onnxruntime differs')
    assert 'REFUSED' in stdout and 'nothing written' in err
    assert list(tmp_path.iterdir()) == []


def test_bad_input_is_one_line(tmp_path, capsys):
    other = tmp_path / 'rexnet.pth'
    torch.save(timm.create_model('rexnet_100').state_dict(), other)
    out = tmp_path / 'x.onnx'
    cases = [
        (['recnext_m9', '--format', 'onnx', '--out', str(out)], "unknown model 'recnext_m9'"),
        (['RecNeXt:m9', '--format', 'onnx', '--out', str(out)], "unknown RecNeXt arch 'm9'"),
        (['Nope:m0', '--format', 'onnx', '--out', str(out)], "unknown backbone type 'Nope'"),
        (['recnext_m0', '--checkpoint', str(other), '--format', 'onnx', '--out', str(out)],
         'looks like a ReXNet checkpoint'),
        (['RecNeXt:m0', '--checkpoint', str(other), '--format', 'onnx', '--out', str(out)],
         'looks like a ReXNet checkpoint'),
        (['recnext_m0', '--format', 'tensorrt', '--out', str(out)], "unsupported format 'tensorrt'"),
        (['recnext_m0', '--format', 'onnx', '--shape', '3x224x224', '--out', str(out)], 'is not BxCxHxW'),
        (['recnext_m0', '--format', 'onnx', '--shape', '1x4x64x64', '--out', str(out)], 'has 4 channels'),
        (['recnext_m0', '--format', 'openvino', '--out', str(out)], 'ending in .xml'),
        (['recnext_m0', '--format', 'onnx', '--out', str(tmp_path / 'no' / 'x.onnx')], 'output folder does not'),
    ]
    for argv, message in cases:
        code, _, err = run_tool(argv, capsys)
        assert code == 2 and err.count('\n') == 1 and err.startswith('export: error: '), (argv, err)
        assert message in err, (argv, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['rexnet.pth']


def test_a_fitting_checkpoint_is_exported(tmp_path, capsys):
    weights = tmp_path / 'm0.pth'
    model = with_random_statistics(timm.create_model('recnext_m0'))
    torch.save({'model': model.state_dict()}, weights)
    code, stdout, _ = run_tool(['recnext_m0', '--checkpoint', str(weights), '--format', 'onnx',
                                '--shape', '1x3x64x64', '--check'], capsys)
    assert code == 0 and 'checked; nothing written' in stdout and 'relative, tolerance 0.0001) ok' in stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ['m0.pth']


def test_config_and_checkpoint_go_to_mmdeploy(tmp_path, monkeypatch, capsys):
    calls = []
    deploy = types.ModuleType('mm_efficient_backbones.mm_common.deploy')
    deploy.export_mm_model = lambda *args, **kwargs: calls.append((args, kwargs)) or {
        backend: dict(precision='fp32', files=[f'{args[3]}/{backend}/end2end.xml']) for backend in args[2]}
    deploy.format_metrics = lambda result: 'coco/bbox_mAP 0.5 (PyTorch 0.5, difference +0.0000)'
    deploy.time_mm_forward = None  # not called without --time
    monkeypatch.setitem(sys.modules, 'mm_efficient_backbones.mm_common.deploy', deploy)
    code, stdout, _ = run_tool(['configs/demo/recnext_m0_demo_coco.py', 'epoch_1.pth', '--format', 'openvino',
                                '--out', str(tmp_path)], capsys)
    assert code == 0
    assert calls == [(('configs/demo/recnext_m0_demo_coco.py', 'epoch_1.pth', ['openvino'],
                       str(tmp_path)), dict(check=True, indices=None))]
    assert 'recnext_m0_demo_coco.py, openvino (fp32): coco/bbox_mAP 0.5' in stdout


def test_every_model_and_backbone_is_exportable():
    """export --all's list: every model and every TYPE:ARCH[:VARIANT] of every family, each of
    which builds a target (shapes only: on the meta device)."""
    for record in registry.families():
        specs = [spec for spec in registry.backbone_specs() if spec.startswith(record.type + ':')]
        assert specs == record.specs() and len(specs) == len(record.archs) * max(1, len(record.variants))
        assert set(record.models) <= set(registry.model_names())
    for spec in registry.model_names() + registry.backbone_specs():
        resolved = resolve(spec)
        assert resolved.family is not None, spec
    assert 'resnet50' not in registry.model_names()
    with pytest.raises(SpecError, match="unknown model 'resnet50'"):
        export.build_target('resnet50')


def test_bf16_is_refused_without_bf16_units(tmp_path):
    if export.cpu_has_bf16():
        pytest.skip('this CPU has bf16 units')
    with pytest.raises(export.ExportError, match='bf16 is unavailable here'):
        export.load_runner(str(tmp_path / 'model.xml'), 'openvino', precision='bf16')


def test_convnext1d_compiles_as_one_graph():
    model = ConvNeXt1DBackbone('demo', variant='1dpp').eval()
    x = torch.randn(1, 3, 45, 61)
    with torch.no_grad():
        want = model(x)
        explanation = torch._dynamo.explain(model)(x)
        assert (explanation.graph_count, explanation.graph_break_count) == (1, 0), explanation.break_reasons
        torch._dynamo.reset()
        got = torch.compile(model, backend='aot_eager')(x)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('model', ['recnext_m0', 'repnext_m0', 'rexnet_lite_100', 'rexnet_100', 'convnext1d'])
def test_bf16_autocast_training_step_on_cpu(model):
    """Issue 22 item 5: forward under CPU bf16 autocast, then backward, in every family."""
    torch.manual_seed(0)
    net = (ConvNeXt1DBackbone('demo', variant='1dpp') if model == 'convnext1d'
           else timm.create_model(model, num_classes=10)).train()
    x = torch.randn(2, 3, 64, 64)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = net(x)
        loss = sum(o.float().mean() for o in out) if isinstance(out, tuple) else out.float().mean()
    loss.backward()
    grads = [p.grad for p in net.parameters() if p.requires_grad]
    assert all(g is not None and g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)
