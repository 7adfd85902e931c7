"""tools/benchmark.py: MAC counting against a hand count, model selection, the
published-number differences, and one end-to-end run on a tiny input."""
import json

import pytest
import timm
import torch
import torch.nn.functional as F
from torch import nn

from conftest import load_script

from mm_efficient_backbones.backbones import benchmarking
from mm_efficient_backbones.backbones.benchmarking import SpeedOptions, counting
from mm_efficient_backbones.backbones.errors import UserError
from mm_efficient_backbones.backbones.models import registry
from mm_efficient_backbones.tools import benchmark


def plain_conv_net() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1),        # 8 x 16 x 16 outputs, 3*3*3 MACs each
        nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, groups=8),        # depthwise: 8 x 16 x 16, 3*3 each
        nn.Conv2d(8, 16, 1),                            # 16 x 16 x 16, 8 each
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(16, 10))                              # 10 outputs, 16 each


def test_macs_of_a_plain_conv_net_equal_the_hand_count():
    hand = 8 * 16 * 16 * 27 + 8 * 16 * 16 * 9 + 16 * 16 * 16 * 8 + 10 * 16
    assert counting.count_macs(plain_conv_net().eval(), 32) == hand
    assert counting.count_params(plain_conv_net()) == (8 * 27 + 8) + 16 + (8 * 9 + 8) + (16 * 8 + 16) + (10 * 16 + 10)


def test_fused_conv_kernels_are_counted_as_the_convs_they_replace():
    model = timm.create_model('recnext_m0').eval()
    unfused = counting.count_macs(model, 64)
    # Only the second (distillation) head goes: merged into the first, 320 x 1000 MACs.
    assert counting.count_macs(model.fuse(), 64) == unfused - 320 * 1000


def test_model_selection_globs_project_models_and_takes_exact_timm_names():
    ours = registry.model_names()
    assert 'recnext_m3' in ours and 'resnet50' not in ours
    assert benchmarking.select_models(['recnext_m[01]', 'resnet18']) == ['recnext_m0', 'recnext_m1', 'resnet18']
    assert benchmarking.select_models(['ConvNeXt1D:demo:2d']) == ['ConvNeXt1D:demo:2d']
    assert benchmarking.select_models(None) == ours
    with pytest.raises(UserError, match="no model matches 'nosuch_\\*'"):
        benchmarking.select_models(['nosuch_*'])


def test_differences_are_explained_by_the_papers_precision():
    assert benchmarking.difference(8.21, '8.2') == (pytest.approx(0.01), 'paper rounding')
    assert benchmarking.difference(15.6, '16') == (pytest.approx(-0.4), 'paper rounding')
    assert benchmarking.difference(6.853, '6.8') == (pytest.approx(0.053), 'paper truncates')
    assert benchmarking.difference(1.147, '1.2') == (pytest.approx(-0.053), '')
    assert benchmarking.difference(1.0, None) == (None, '')
    # Every family has published sizes in the one table, with its precision kept.
    assert {registry.family_of_model(name).type for name in benchmarking.PUBLISHED} == {
        record.type for record in registry.families()}
    assert benchmarking.PUBLISHED['rexnet_200']['params'] == '16'


def test_published_numbers_come_from_the_zoo_table():
    from mm_efficient_backbones.backbones.weights import zoo
    for name, paper in benchmarking.PUBLISHED.items():
        assert (paper['params'], paper['macs']) == (zoo.model(name).params, zoo.model(name).macs)


def test_markdown_rows_list_every_config_with_its_published_result():
    """The cells that were '-' for configs that exist (ReXNet, ConvNeXt-B, ConvNeXt-T-2D)."""
    zoo_table = load_script('zoo_table')
    assert zoo_table.configs_cell('recnext_m3').split('<br>') == [
        '`recnext_m3_coco.py` (Mask R-CNN 1x): 41.7 box AP / 38.6 mask AP',
        '`recnext_m3_ade20k.py` (Semantic FPN 80k): 41.0 mIoU',
        '`recnext_m3_ade20k_upernet.py` (UPerNet 160k): -']
    assert zoo_table.configs_cell('rexnet_100').split('<br>') == [
        '`rexnet_100_coco_faster_rcnn.py` (Faster R-CNN 1x): 38.5 box AP',
        '`rexnet_100_coco.py` (Mask R-CNN 1x): 38.9 box AP / 35.4 mask AP',
        '`rexnet_100_ade20k.py` (Semantic FPN 80k): -']
    assert zoo_table.configs_cell('convnext_base_2d').split('<br>') == [
        '`convnext1d_base_2d_coco.py` (Cascade Mask R-CNN 3x): 52.4 box AP / 45.2 mask AP',
        '`convnext1d_base_2d_ade20k.py` (UPerNet 160k): 49.4 mIoU (multi-scale)']
    assert zoo_table.configs_cell('recnext_m0') == zoo_table.configs_cell('resnet18') == '-'
    assert zoo_table.imagenet_weights('recnext_m3') == 'release: `recnext_m3.dist_in1k`, `recnext_m3.in1k`'
    assert zoo_table.imagenet_weights('convnext_tiny_1d') == 'Google Drive, convert'
    assert zoo_table.imagenet_weights('resnet18') == '-'
    table = zoo_table.markdown_table([benchmarking.size_row('recnext_m0')], [])
    (row,) = [line for line in table.splitlines() if line.startswith('| recnext_m0 |')]
    assert row.endswith('| release: `recnext_m0.dist_in1k`, `recnext_m0.in1k` | - |')


def test_tool_runs_end_to_end_on_a_tiny_input(tmp_path, capsys):
    out = tmp_path / 'result.json'
    assert benchmark.main(['--models', 'recnext_m0', '--shapes', '1x32x48', '--devices', 'cpu',
                           '--warmup', '0', '--repeats', '2', '--json', str(out)]) == 0
    result = json.loads(out.read_text())
    assert result['mac_counter'] == 'torch.utils.flop_counter.FlopCounterMode'
    (size,) = result['sizes']
    assert size['params_m'] == pytest.approx(2.5, abs=0.05) and size['difference_note'] == 'paper rounding'
    (speed,) = result['speed']
    assert (speed['batch'], speed['height'], speed['width']) == (1, 32, 48)
    for form in ('train', 'deploy'):
        rates = speed[form]['img_per_s']
        assert 0 < rates['min'] <= rates['median'] <= rates['max'] and rates['repeats'] == 2
        assert speed[form]['peak_mib'] > 0
    printed = capsys.readouterr().out
    assert printed.splitlines()[2].split()[:2] == ['recnext_m0', '2.50']


def test_zoo_table_script_prints_the_readme_rows(capsys):
    assert load_script('zoo_table').main(['--models', 'recnext_m0']) == 0
    assert '| recnext_m0 | 2.50 | 0.40 | 2.5 M / 0.4 G |' in capsys.readouterr().out


def test_bad_shape_is_a_one_line_error(capsys):
    with pytest.raises(SystemExit):
        benchmark.main(['--shapes', '8x224'])
    assert "shape '8x224': use BATCHxHEIGHTxWIDTH" in capsys.readouterr().err


def test_deploy_form_equals_training_form_in_fp32_on_every_fast_path():
    """The oneDNN-fused and channels-last deploy form of RecNeXt, against the training form."""
    torch.manual_seed(0)
    model = timm.create_model('recnext_m0').eval()
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.normal_(0, 0.1)
            module.running_var.uniform_(0.75, 1.25)
    fused = timm.create_model('recnext_m0').eval()
    fused.load_state_dict(model.state_dict())
    fused.fuse()
    x = torch.randn(2, 3, 67, 93)
    with torch.no_grad():
        want = model(x)
    for context in (torch.inference_mode, torch.no_grad, torch.enable_grad):  # fused kernels, and not
        with context():
            got = fused(x)
        assert (got - want).abs().max().item() <= 1e-4 * want.abs().max().item(), context


def test_deploy_form_traces_as_one_graph_for_torch_compile():
    """benchmark --compile: the fast path's eager-only checks must not break the graph."""
    fused = timm.create_model('recnext_m0', num_classes=0).eval().fuse()
    with torch.inference_mode():
        explanation = torch._dynamo.explain(fused)(torch.randn(1, 3, 64, 64))
    assert (explanation.graph_count, explanation.graph_break_count) == (1, 0), explanation.break_reasons


def test_compile_deploy_times_the_compiled_deploy_form_beside_the_eager_training_form(monkeypatch):
    compiled = []
    monkeypatch.setattr(torch, 'compile', lambda model, **options: compiled.append(model) or model)
    options = SpeedOptions(compile='deploy', warmup=0, repeats=1)
    (row,) = benchmarking.benchmark_speed('recnext_m0', torch.device('cpu'), [(1, 32, 32)], options)
    assert row['compiled'] == 'deploy' and len(compiled) == 1
    assert not any(isinstance(m, nn.BatchNorm2d) for m in compiled[0].modules())  # the fused form
    assert benchmark.parse_args(['--compile']).compile == 'both'
    assert 'deploy-compiled' in benchmarking.format_speed_row(row)


@pytest.mark.parametrize('conv', [
    nn.Conv2d(8, 16, 7, stride=2, padding=3, groups=8, bias=False),  # two outputs per channel
    nn.Conv2d(8, 8, 5, padding=2, groups=8),                          # depthwise
    nn.Conv2d(8, 12, 1),                                              # 1x1: also a GEMM
    nn.GELU()])
def test_floor_kernels_compute_the_op_they_stand_for(conv):
    x = torch.randn(2, 8, 9, 11)
    with torch.inference_mode():
        want = F.gelu(x) if isinstance(conv, nn.GELU) else F.conv2d(
            x, conv.weight, None, conv.stride, conv.padding, conv.dilation, conv.groups)
        for name, kernel in load_script('kernel_floor').bare_kernels(conv, x).items():
            got = kernel()
            got = got.to_dense() if got.is_mkldnn else got
            if name == 'GEMM':
                got = got.reshape(2, 9, 11, -1).permute(0, 3, 1, 2)
            assert torch.allclose(got, want, atol=1e-5), name
    if isinstance(conv, nn.Conv2d) and conv.kernel_size == (1, 1):
        assert 'GEMM' in load_script('kernel_floor').bare_kernels(conv, x)


def test_floor_bounds_the_deploy_speedup_from_the_same_rounds(capsys):
    (row,) = load_script('kernel_floor').compute_floor('recnext_m0', [(1, 32, 32)], SpeedOptions(warmup=0, repeats=2))
    assert set(row['floor_parts_ms']) == {'1x1 convs', 'other convs', 'GELU'}
    assert row['floor_ms'] == pytest.approx(sum(row['floor_parts_ms'].values()), rel=0.5)
    # 2 stem convs, and per block and downsample: depthwise convs and two 1x1 convs and a GELU.
    assert sum(row['fastest_kernels'].values()) > 50 and row['speedup_bound'] > 0
    assert 'no deploy form of these kernels beats' in capsys.readouterr().out


def test_detector_training_step_beside_resnet50(capsys):
    pytest.importorskip('mmdet')
    pytest.importorskip('mmseg')
    from mm_efficient_backbones.mm_common.train_step import train_step_cost
    rows = train_step_cost('configs/demo/recnext_m0_demo_coco.py', 'cpu', size=64, repeats=1)
    assert [row['backbone'] for row in rows] == ['recnext_m0_demo_coco.py', 'resnet50']
    assert all(row['task'] == 'mmdet' and row['seconds_median'] > 0 for row in rows)
    assert 'train step mmdet resnet50' in capsys.readouterr().out


def test_runtimes_are_timed_in_the_same_rounds_as_the_eager_forms(capsys):
    pytest.importorskip('onnxscript')
    pytest.importorskip('onnxruntime')
    pytest.importorskip('openvino')
    args = benchmark.parse_args(['--devices', 'cpu', '--warmup', '0', '--repeats', '2',
                                 '--runtime', 'torch', 'onnxruntime', 'openvino'])
    (row,) = benchmarking.benchmark_speed('recnext_m0', torch.device('cpu'), [(1, 32, 32)], SpeedOptions.of(args))
    assert row['runtimes'] == ['onnxruntime', 'openvino']
    for form in ('train', 'deploy', 'onnxruntime', 'openvino'):
        assert row[form]['img_per_s']['repeats'] == 2
        assert row['speedup'][form] == pytest.approx(
            row[form]['img_per_s']['median'] / row['train']['img_per_s']['median'])
    fastest = max(('deploy', 'onnxruntime', 'openvino'), key=lambda form: row[form]['img_per_s']['median'])
    assert row['fastest_fp32']['form'] == fastest
    out = capsys.readouterr().out
    # Each runtime says its precision and how far it is from the training form.
    assert 'onnxruntime: onnxruntime' in out and 'fp32' in out and 'openvino: openvino' in out
    assert 'f32 (INFERENCE_PRECISION_HINT' in out and 'difference from the training form' in out
    assert 'fastest fp32: ' in benchmarking.format_speed_row(row)


def test_bf16_needs_bf16_units(capsys):
    from mm_efficient_backbones.backbones.export import cpu_has_bf16
    if cpu_has_bf16():
        assert benchmark.parse_args(['--precision', 'bf16']).precision == 'bf16'
        return
    assert benchmark.main(['--precision', 'bf16', '--no-speed', '--models', 'recnext_m0']) == 2
    err = capsys.readouterr().err
    assert err.startswith('benchmark: error: --precision bf16 is unavailable here: this CPU has no bf16 units')
    assert err.count('\n') == 1
