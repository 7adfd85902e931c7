"""DepthwiseConv2d: nn.Conv2d's outputs and gradients, with a backward made of forward convs."""
import pytest
import torch
from torch import nn

from mm_efficient_backbones.backbones.models.layers.depthwise import DepthwiseConv2d


@pytest.mark.parametrize('stride', [1, 2])
@pytest.mark.parametrize('kernel', [3, 5])
@pytest.mark.parametrize('size', [(2, 8, 16, 16), (3, 4, 9, 14)])  # odd sizes: strides drop rows
def test_gradients_equal_autograd_of_nn_conv2d(stride, kernel, size):
    torch.manual_seed(0)
    channels = size[1]
    fast = DepthwiseConv2d(channels, channels, kernel, groups=channels, stride=stride,
                           padding=kernel // 2, bias=False)
    plain = nn.Conv2d(channels, channels, kernel, groups=channels, stride=stride,
                      padding=kernel // 2, bias=False)
    plain.load_state_dict(fast.state_dict())
    x_fast = torch.randn(size, requires_grad=True)
    x_plain = x_fast.detach().clone().requires_grad_()
    out_fast, out_plain = fast(x_fast), plain(x_plain)
    assert torch.equal(out_fast, out_plain)
    assert out_fast.grad_fn.name() != out_plain.grad_fn.name()  # the fast backward is in use
    grad = torch.randn_like(out_plain)
    out_fast.backward(grad)
    out_plain.backward(grad)
    for got, want in ((x_fast.grad, x_plain.grad), (fast.weight.grad, plain.weight.grad)):
        assert (got - want).abs().max() <= 1e-5 * want.abs().max()


def test_not_depthwise_is_refused():
    with pytest.raises(ValueError, match='in_channels == out_channels == groups'):
        DepthwiseConv2d(4, 8, 3, groups=4)
