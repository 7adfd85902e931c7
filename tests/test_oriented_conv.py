"""The oriented 1D depthwise conv against a deliberately slow loop of the formula in the issue."""
import math

import numpy as np
import pytest
import torch

from mm_efficient_backbones.backbones.models.layers.oriented_conv import (OrientedConv1d, oriented_angles, oriented_conv1d, plan_groups,
                                                           prepare_plans)

DEVICES = ['cpu'] + (['cuda'] if torch.cuda.is_available() else [])


def loop_reference(x, weight, theta, bias, stride, resid):
    """out[n,c,p,q] = bias[c] + sum_s w[c,s] x[n,c, p*stride + trunc(-sin t (s-pad)), q*stride + trunc(cos t (s-pad))],
    one output pixel and tap at a time, the offsets in float32 as the authors' kernels compute them."""
    x, weight = x.detach().double().cpu(), weight.detach().double().cpu()
    batch, channels, height, width = x.shape
    taps = weight.shape[-1]
    pad = taps // 2
    out = torch.zeros(batch, channels, -(-height // stride), -(-width // stride), dtype=torch.float64)
    for c in range(channels):
        sin = np.float32(math.sin(float(theta[c])))
        cos = np.float32(math.cos(float(theta[c])))
        for s in range(taps):
            tap = float(weight[c, 0, 0, s]) + (1.0 if resid and s == pad else 0.0)
            dy, dx = int(-sin * np.float32(s - pad)), int(cos * np.float32(s - pad))
            for p in range(out.shape[2]):
                for q in range(out.shape[3]):
                    h, w = p * stride + dy, q * stride + dx
                    if 0 <= h < height and 0 <= w < width:
                        out[:, c, p, q] += tap * x[:, c, h, w]
        if bias is not None:
            out[:, c] += float(bias[c].detach())
    return out


def make_conv(channels=8, kernel_size=7, stride=1, resid=False, angle_offset=0.0, seed=0, **kwargs):
    torch.manual_seed(seed)
    conv = OrientedConv1d(channels, kernel_size, stride=stride, resid=resid, angle_offset=angle_offset, **kwargs)
    with torch.no_grad():
        conv.weight.normal_()
        if conv.bias is not None:
            conv.bias.normal_()
    return conv


# 8 channels = one channel per direction, so every angle group is checked; offsets 0.5
# (the rotated blocks) and 0.3 (angles off the 22.5-degree grid) move every group.
@pytest.mark.parametrize('angle_offset', [0.0, 0.5, 0.3])
@pytest.mark.parametrize('stride', [1, 2])
@pytest.mark.parametrize('size,kernel_size', [((9, 7), 7), ((6, 11), 15), ((5, 5), 9)])
def test_matches_loop_for_every_angle_group(angle_offset, stride, size, kernel_size):
    conv = make_conv(8, kernel_size, stride, angle_offset=angle_offset).double()
    x = torch.randn(2, 8, *size, dtype=torch.float64)
    got = conv(x)
    want = loop_reference(x, conv.weight, conv.theta, conv.bias, stride, resid=False)
    assert got.shape == want.shape == (2, 8, -(-size[0] // stride), -(-size[1] // stride))
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


@pytest.mark.parametrize('stride', [1, 2, 3])
@pytest.mark.parametrize('size', [(1, 1), (2, 3), (3, 1), (4, 9)])
def test_images_smaller_than_the_kernel(stride, size):
    # The shears must stay exact when the kernel is far wider than the image.
    conv = make_conv(8, 31, stride, resid=True).double()
    x = torch.randn(1, 8, *size, dtype=torch.float64)
    want = loop_reference(x, conv.weight, conv.theta, conv.bias, stride, resid=True)
    torch.testing.assert_close(conv(x), want, rtol=0, atol=1e-12)


@pytest.mark.parametrize('stride', [1, 2])
def test_resid_adds_the_input_without_storing_it(stride):
    conv = make_conv(16, 9, stride, resid=True, bias=False).double()
    x = torch.randn(1, 16, 7, 10, dtype=torch.float64)
    want = loop_reference(x, conv.weight, conv.theta, None, stride, resid=True)
    torch.testing.assert_close(conv(x), want, rtol=0, atol=1e-12)
    plain = make_conv(16, 9, stride, resid=False, bias=False).double()
    torch.testing.assert_close(conv(x), plain(x) + x[..., ::stride, ::stride], rtol=0, atol=1e-12)


def test_channels_of_one_angle_need_not_be_adjacent():
    conv = make_conv(12, 9, 2).double()
    conv.theta.data = conv.theta.data[torch.randperm(12, generator=torch.Generator().manual_seed(1))]
    x = torch.randn(1, 12, 8, 7, dtype=torch.float64)
    want = loop_reference(x, conv.weight, conv.theta, conv.bias, 2, resid=False)
    torch.testing.assert_close(conv(x), want, rtol=0, atol=1e-12)


def test_taps_landing_on_one_pixel_add_up():
    # At 45 degrees a 1x31 kernel reaches 21 distinct pixels; all 31 weights still count.
    conv = OrientedConv1d(1, 31, bias=False)
    conv.theta.data.fill_(math.pi / 4)
    conv.weight.data.fill_(1.0)
    x = torch.zeros(1, 1, 41, 41)
    x[0, 0, 20, 20] = 1
    y = conv(x)
    assert y.sum().item() == 31 and (y > 0).sum().item() == 21


def test_ninety_degrees_uses_float32_offsets():
    # float32 sin(pi/2) is exactly 1, so the last tap reaches 15 rows up (float64 would give 14).
    conv = OrientedConv1d(1, 31, bias=False)
    conv.theta.data.fill_(math.pi / 2)
    conv.weight.data.zero_()
    conv.weight.data[0, 0, 0, -1] = 1
    x = torch.zeros(1, 1, 31, 3)
    x[0, 0, 0, 1] = 1
    assert conv(x)[0, 0, 15, 1].item() == 1


def test_angle_assignment():
    theta = oriented_angles(16)
    groups = [(8 * (c + 1) - 1) // 16 for c in range(16)]
    assert theta.dtype == torch.float32 and groups == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7]
    assert theta.tolist() == pytest.approx([math.pi * n / 8 for n in groups])
    rotated = oriented_angles(16, 0.5)
    assert rotated.tolist() == pytest.approx([math.pi * ((n / 8 + 0.5) % 1) for n in groups])
    # uneven channel counts spread the groups as the formula says
    # 12 channels: groups (8(c + 1) - 1) // 12 = 0, 1, 1, 2, 3, 3, 4, 5, 5, 6, 7, 7
    assert [len(plan.channels) for plan in plan_groups(oriented_angles(12), 7)] == [1, 2, 1, 2, 1, 2, 1, 2]


@pytest.mark.parametrize('stride', [1, 2])
def test_channels_last_memory_format_and_data_format(stride):
    conv = make_conv(16, 15, stride, resid=True)
    x = torch.randn(2, 16, 11, 13)
    want = conv(x)
    got = conv(x.contiguous(memory_format=torch.channels_last))
    assert got.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(got, want)
    nhwc = make_conv(16, 15, stride, resid=True, data_format='channels_last')
    torch.testing.assert_close(nhwc(x.permute(0, 2, 3, 1)), want.permute(0, 2, 3, 1))


@pytest.mark.parametrize('dtype,tol', [(torch.bfloat16, 3e-2), (torch.float16, 5e-3)])
def test_low_precision_keeps_float32_angles(dtype, tol):
    conv = make_conv(16, 15, 2, resid=True)
    x = torch.randn(2, 16, 9, 12)
    want = conv(x)
    low = make_conv(16, 15, 2, resid=True).to(dtype)
    assert low.theta.dtype == torch.float32 and low.weight.dtype == dtype
    x_low = x.to(dtype).requires_grad_()
    got = low(x_low)
    got.float().sum().backward()
    assert got.dtype == dtype and x_low.grad.dtype == dtype and low.weight.grad.dtype == dtype
    assert ((got.float() - want).abs().max() / want.abs().max()).item() < tol


@pytest.mark.parametrize('stride,size', [(1, (5, 6)), (2, (5, 6)), (2, (6, 7))])
def test_gradcheck(stride, size):
    conv = make_conv(8, 7, stride, resid=True, angle_offset=0.3).double()
    x = torch.randn(1, 8, *size, dtype=torch.float64, requires_grad=True)
    plans = conv.plans()

    def fn(x, weight, bias):
        return oriented_conv1d(x, weight, bias, plans, stride, resid=True)
    # fast_mode checks random projections of the Jacobian: the same check, far fewer forwards.
    assert torch.autograd.gradcheck(fn, (x, conv.weight, conv.bias), fast_mode=True)


def test_theta_is_a_fixed_parameter():
    conv = make_conv(8, 7)
    assert isinstance(conv.theta, torch.nn.Parameter) and conv.theta.shape == (8,)
    assert not conv.theta.requires_grad
    conv(torch.randn(1, 8, 6, 6)).sum().backward()
    assert conv.theta.grad is None and conv.weight.grad is not None and conv.bias.grad is not None
    assert 'theta' in conv.state_dict()


def test_loaded_theta_changes_the_taps():
    conv = make_conv(8, 7)
    x = torch.randn(1, 8, 9, 9)
    before = conv(x)
    turned = make_conv(8, 7, angle_offset=0.5)
    conv.load_state_dict(turned.state_dict())  # same weights, angles turned by 90 degrees
    torch.testing.assert_close(conv(x), turned(x))
    assert not torch.allclose(conv(x), before)


@pytest.mark.parametrize('device', DEVICES)
def test_any_input_size_on_device(device):
    conv = make_conv(8, 31, 2, resid=True).to(device)
    for size in [(1, 1), (3, 40), (17, 2)]:
        x = torch.randn(1, 8, *size, device=device)
        y = conv(x)
        assert y.shape[-2:] == (-(-size[0] // 2), -(-size[1] // 2))
        torch.testing.assert_close(y.cpu(), make_conv(8, 31, 2, resid=True)(x.cpu()), rtol=1e-5, atol=1e-5)


def test_bad_arguments_say_what_to_do():
    with pytest.raises(ValueError, match='odd kernel_size, got 4'):
        OrientedConv1d(8, 4)
    with pytest.raises(ValueError, match="data_format must be 'channels_first' or 'channels_last'"):
        OrientedConv1d(8, 5, data_format='nhwc')


def test_bf16_autocast_backward_on_cpu():
    """Issue 22 item 5: the fp32 input saved beside a bf16 gradient crashed the CPU backward."""
    conv = make_conv(8, 7)
    x = torch.randn(2, 8, 9, 11, requires_grad=True)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        y = conv(x)
    assert y.dtype == torch.bfloat16
    y.float().sum().backward()
    reference = make_conv(8, 7)
    x_ref = x.detach().clone().requires_grad_()
    reference(x_ref).sum().backward()
    assert x.grad.dtype == conv.weight.grad.dtype == torch.float32
    for got, want in ((x.grad, x_ref.grad), (conv.weight.grad, reference.weight.grad)):
        assert ((got - want).abs().max() / want.abs().max()).item() < 3e-2


def test_onnx_export_uses_standard_ops_for_any_size():
    """Exported with dynamic sizes (every direction, stride 2, resid), then run in ONNX
    Runtime at sizes above and below the kernel: no index_add, no data-pointer access."""
    pytest.importorskip('onnxscript')  # torch's dynamo exporter builds the graph with it
    ort = pytest.importorskip('onnxruntime')
    conv = prepare_plans(make_conv(16, 9, 2, resid=True, angle_offset=0.3).eval())  # never called before
    auto = torch.export.Dim.DYNAMIC
    program = torch.onnx.export(conv, (torch.randn(2, 16, 12, 14),), dynamo=True, verbose=False,
                                dynamic_shapes=({0: auto, 2: auto, 3: auto},))
    model = program.model_proto
    assert {node.domain for node in model.graph.node} <= {'', 'ai.onnx'}
    assert not {'ScatterElements', 'ScatterND'} & {node.op_type for node in model.graph.node}
    session = ort.InferenceSession(model.SerializeToString(), providers=['CPUExecutionProvider'])
    for shape in [(1, 16, 12, 14), (2, 16, 23, 5), (1, 16, 3, 4)]:
        x = torch.randn(*shape)
        (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
        with torch.no_grad():
            torch.testing.assert_close(torch.from_numpy(got), conv(x), rtol=1e-5, atol=1e-5)
