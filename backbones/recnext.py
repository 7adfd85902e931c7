"""RecNeXt-M: recursive large-kernel convolutions on a MetaNeXt trunk.

Reference: Zhao et al., "RecConv: Efficient Recursive Convolutions for Multi-Frequency
Representations" (https://github.com/suous/RecNeXt). Parameter names follow the
authors' checkpoints exactly, so their ``{'model': state_dict}`` files load strictly.

``timm.create_model('recnext_m3')`` builds the ImageNet classifier (``features_only=True``
works); :class:`RecNeXtBackbone` is the dense-prediction trunk that the mm glue
registers as ``type='RecNeXt'``.
"""
from typing import List, Sequence, Tuple

import torch
import torch.nn.functional as F
from timm.layers import DropPath, trunc_normal_
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from torch import nn

from ._fusion import fuse_bn_linear, fuse_conv_bn, fuse_modules
from .depthwise import DepthwiseConv2d
from .multiscale import FAMILY_KEY_SIGNATURES, MultiScaleBackbone

__all__ = ['RecNeXt', 'RecNeXtBackbone', 'RecConv2d', 'RECNEXT_ARCHS']

# arch -> (embed dims, depths, default drop path rate of the ImageNet recipe)
RECNEXT_ARCHS = {
    'm0': ((40, 80, 160, 320), (2, 2, 9, 1), 0.0),
    'm1': ((48, 96, 192, 384), (3, 3, 15, 2), 0.0),
    'm2': ((56, 112, 224, 448), (3, 3, 15, 2), 0.0),
    'm3': ((64, 128, 256, 512), (3, 3, 13, 2), 0.0),
    'm4': ((64, 128, 256, 512), (5, 5, 25, 4), 0.2),
    'm5': ((80, 160, 320, 640), (7, 7, 35, 2), 0.3),
}
MLP_RATIO = 2
# The shared stride-2 conv of RecConv2d only exists in RecNeXt checkpoints.
FAMILY_KEY_SIGNATURES['RecNeXt'] = r'token_mixer\.down\.weight$'


class ConvNorm(nn.Sequential):
    """Bias-free conv followed by BatchNorm; fuses into one conv."""

    def __init__(self, in_channels, out_channels, kernel_size=1, stride=1, padding=0, groups=1):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding,
                              groups=groups, bias=False)
        self.norm = nn.BatchNorm2d(out_channels)

    def fuse(self) -> nn.Conv2d:
        return fuse_conv_bn(self.conv, self.norm)


def conv_mlp(channels: int, hidden: int) -> nn.Sequential:
    """1x1 ConvNorm -> GELU -> 1x1 ConvNorm (indices 0 and 2 are checkpoint keys)."""
    return nn.Sequential(ConvNorm(channels, hidden), nn.GELU(), ConvNorm(hidden, channels))


class RecConv2d(nn.Module):
    """Recursive depthwise convolution.

    The input is downsampled ``level`` times by one shared stride-2 depthwise conv. Going
    back up, each level is convolved, added to the next finer level, and bilinearly
    resized to that level's saved size, so any input size (odd ones too) works. The
    effective receptive field grows with each level while cost stays near one 5x5 conv.
    """

    def __init__(self, channels: int, kernel_size: int = 5, level: int = 1):
        super().__init__()
        if level < 1:
            raise ValueError(f'RecConv2d needs level >= 1, got {level}')
        self.level = level
        conv_args = dict(in_channels=channels, out_channels=channels, groups=channels,
                         kernel_size=kernel_size, padding=kernel_size // 2, bias=False)
        self.down = DepthwiseConv2d(stride=2, **conv_args)
        self.convs = nn.ModuleList(DepthwiseConv2d(**conv_args) for _ in range(level + 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sizes, pyramid = [], []
        coarse = x
        for _ in range(self.level):
            sizes.append(coarse.shape[-2:])
            coarse = self.down(coarse)
            pyramid.append(coarse)
        upsampled = None
        # Coarsest level first: convs[0] sees the smallest map.
        for conv, feature, size in zip(self.convs, reversed(pyramid), reversed(sizes)):
            mixed = feature if upsampled is None else feature + upsampled
            upsampled = F.interpolate(conv(mixed), size=size, mode='bilinear', align_corners=False)
        return self.convs[self.level](x + upsampled)


class RecNeXtBlock(nn.Module):
    """x + MLP(BN(RecConv2d(x))): token mixing, then channel mixing."""

    def __init__(self, channels: int, level: int, drop_path: float = 0.0):
        super().__init__()
        self.token_mixer = RecConv2d(channels, kernel_size=5, level=level)
        self.norm = nn.BatchNorm2d(channels)
        self.channel_mixer = conv_mlp(channels, channels * MLP_RATIO)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x):
        return x + self.drop_path(self.channel_mixer(self.norm(self.token_mixer(x))))

    def fuse(self) -> nn.Module:
        # The BN after the recursive conv folds into its last (full-resolution) conv.
        convs = self.token_mixer.convs
        convs[-1] = fuse_conv_bn(convs[-1], self.norm)
        return FusedRecNeXtBlock(self.token_mixer, self.channel_mixer)


class Downsample(nn.Module):
    """Stride-2 7x7 conv (groups = in channels, out = 2x in) -> BN, then x + MLP(x)."""

    def __init__(self, in_channels: int):
        super().__init__()
        out_channels = in_channels * 2
        self.token_mixer = nn.Conv2d(in_channels, out_channels, 7, stride=2, padding=3,
                                     groups=in_channels)
        self.norm = nn.BatchNorm2d(out_channels)
        self.channel_mixer = conv_mlp(out_channels, out_channels * MLP_RATIO)

    def forward(self, x):
        x = self.norm(self.token_mixer(x))
        return x + self.channel_mixer(x)

    def fuse(self) -> nn.Module:
        return FusedDownsample(fuse_conv_bn(self.token_mixer, self.norm), self.channel_mixer)


class Stem(nn.Module):
    """Two stride-2 3x3 ConvNorms with GELU between: stride 4."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.stem = nn.Sequential(
            ConvNorm(in_channels, out_channels // 2, 3, stride=2, padding=1),
            nn.GELU(),
            ConvNorm(out_channels // 2, out_channels, 3, stride=2, padding=1))

    def forward(self, x):
        return self.stem(x)

    def fuse(self) -> nn.Module:
        return FusedStem(self)


class Stage(nn.Module):
    def __init__(self, in_channels: int, channels: int, level: int,
                 drop_paths: Sequence[float], downsample: bool):
        super().__init__()
        self.downsample = Downsample(in_channels) if downsample else nn.Identity()
        self.blocks = nn.Sequential(*(RecNeXtBlock(channels, level, rate) for rate in drop_paths))

    def forward(self, x):
        return self.blocks(self.downsample(x))


def build_trunk(arch: str, in_chans: int = 3, drop_path_rate: float = 0.0
                ) -> Tuple[Stem, nn.Sequential, List[dict]]:
    """Stem, stages and their feature_info (shared by the classifier and the backbone)."""
    dims, depths, _ = RECNEXT_ARCHS[arch]
    rates = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
    stages, info, start, in_channels = [], [], 0, dims[0]
    for index, (dim, depth) in enumerate(zip(dims, depths)):
        # Four stages: the recursion is deepest where maps are largest.
        stages.append(Stage(in_channels, dim, level=4 - index,
                            drop_paths=rates[start:start + depth], downsample=index > 0))
        info.append(dict(num_chs=dim, reduction=4 * 2 ** index, module=f'stages.{index}'))
        start += depth
        in_channels = dim
    return Stem(in_chans, dims[0]), nn.Sequential(*stages), info


class NormLinear(nn.Sequential):
    """BatchNorm1d -> Linear; fuses into one Linear."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.norm = nn.BatchNorm1d(in_features)
        self.linear = nn.Linear(in_features, out_features)
        trunc_normal_(self.linear.weight, std=0.02)
        nn.init.zeros_(self.linear.bias)

    def fuse(self) -> nn.Linear:
        return fuse_bn_linear(self.norm, self.linear)


class DistilledHead(nn.Module):
    """Two NormLinear heads (class and distillation token), averaged at inference."""

    def __init__(self, in_features: int, num_classes: int, distillation: bool = False):
        super().__init__()
        self.distillation = distillation
        self.head = NormLinear(in_features, num_classes)
        self.head_dist = NormLinear(in_features, num_classes)

    def forward(self, x):
        logits, logits_dist = self.head(x), self.head_dist(x)
        if self.training and self.distillation and not torch.jit.is_scripting():
            return logits, logits_dist
        return (logits + logits_dist) / 2

    @torch.no_grad()
    def fuse(self) -> nn.Linear:
        head, head_dist = self.head.fuse(), self.head_dist.fuse()
        head.weight.add_(head_dist.weight).div_(2)
        head.bias.add_(head_dist.bias).div_(2)
        return head


class RecNeXt(nn.Module):
    """RecNeXt-M ImageNet classifier (timm model)."""

    def __init__(self, arch: str = 'm0', in_chans: int = 3, num_classes: int = 1000,
                 global_pool: str = 'avg', drop_rate: float = 0.0, drop_path_rate=None,
                 distillation: bool = False):
        super().__init__()
        if drop_path_rate is None:
            drop_path_rate = RECNEXT_ARCHS[arch][2]
        self.num_classes = num_classes
        self.global_pool = global_pool
        self.stem, self.stages, self.feature_info = build_trunk(arch, in_chans, drop_path_rate)
        self.num_features = self.head_hidden_size = self.feature_info[-1]['num_chs']
        self.head_drop = nn.Dropout(drop_rate)
        self.head = (DistilledHead(self.num_features, num_classes, distillation)
                     if num_classes > 0 else nn.Identity())

    def forward_features(self, x):
        return self.stages(self.stem(x))

    def forward_head(self, x, pre_logits: bool = False):
        if self.global_pool == 'avg':
            x = x.mean((2, 3))
        x = self.head_drop(x)
        return x if pre_logits else self.head(x)

    def forward(self, x):
        return self.forward_head(self.forward_features(x))

    def get_classifier(self):
        return self.head

    def reset_classifier(self, num_classes: int, global_pool=None):
        self.num_classes = num_classes
        if global_pool is not None:
            self.global_pool = global_pool
        self.head = (DistilledHead(self.num_features, num_classes)
                     if num_classes > 0 else nn.Identity())

    def fuse(self) -> nn.Module:
        """Deploy form: BN folded into convs, the two heads merged into one Linear."""
        return fuse_modules(self)


# ---- Deploy fast path -------------------------------------------------------------------
# What fuse() returns. Same function as the training form (BN folded), but on CPU fp32
# inference: activations in channels-last (no layout copies around the depthwise convs
# and the bilinear resizes), and oneDNN kernels that apply GELU and the residual add
# inside the 1x1 convs instead of two extra passes over memory. Elsewhere (CUDA, fp16,
# autograd) the same modules run plain PyTorch ops.

def _onednn_fusion(x: torch.Tensor) -> bool:
    """True where oneDNN's fused conv kernels apply: CPU fp32 without autograd, in eager
    mode (torch.compile fuses on its own, and better without these opaque kernels)."""
    return (x.device.type == 'cpu' and x.dtype == torch.float32 and not torch.is_grad_enabled()
            and torch.backends.mkldnn.is_available() and not torch.jit.is_scripting()
            and not torch.compiler.is_compiling())


def _channels_last(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last)


def conv_gelu(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """GELU(conv(x)) (exact erf GELU), one oneDNN kernel where it applies."""
    if _onednn_fusion(x):
        return torch.ops.mkldnn._convolution_pointwise(
            x, conv.weight, conv.bias, conv.padding, conv.stride, conv.dilation, conv.groups,
            'gelu', [], 'none')
    return F.gelu(conv(x))


def conv_add(conv: nn.Conv2d, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
    """residual + conv(x), one oneDNN kernel where it applies."""
    if _onednn_fusion(x):
        return torch.ops.mkldnn._convolution_pointwise.binary(
            x, residual, conv.weight, conv.bias, conv.padding, conv.stride, conv.dilation,
            conv.groups, 'add', None, None, [], None)
    return residual + conv(x)


class FusedConvMLP(nn.Module):
    """Deploy form of ``residual + conv_mlp(x)``: two BN-folded 1x1 convs, GELU between."""

    def __init__(self, mlp: nn.Sequential):
        super().__init__()
        expand, _, project = mlp
        self.expand, self.project = expand.fuse(), project.fuse()

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return conv_add(self.project, conv_gelu(self.expand, x), residual)


class FusedStem(nn.Module):
    """Deploy form of :class:`Stem`; switches the activations to channels-last."""

    def __init__(self, stem: Stem):
        super().__init__()
        first, _, second = stem.stem
        self.first, self.second = first.fuse(), second.fuse()

    def forward(self, x):
        return self.second(conv_gelu(self.first, _channels_last(x)))


class FusedRecNeXtBlock(nn.Module):
    """Deploy form of :class:`RecNeXtBlock`: ``x + MLP(RecConv2d(x))``, BN folded."""

    def __init__(self, token_mixer: nn.Module, channel_mixer: nn.Sequential):
        super().__init__()
        self.token_mixer = token_mixer
        self.channel_mixer = FusedConvMLP(channel_mixer)

    def forward(self, x):
        x = _channels_last(x)
        return self.channel_mixer(self.token_mixer(x), x)


class ChannelDoublingDepthwiseConv(nn.Module):
    """A grouped conv with two outputs per input channel, run as a true depthwise conv.

    oneDNN has fast depthwise kernels only for one output per group; with two it falls
    back to a generic grouped conv (3x slower here). Duplicating each input channel
    (2i, 2i+1 <- i) first turns it into a depthwise conv with the same weights.
    """

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        if conv.out_channels != 2 * conv.in_channels or conv.groups != conv.in_channels:
            raise ValueError(f'expected a grouped conv with 2 outputs per input channel, got {conv}')
        self.conv = conv
        self.conv.groups = conv.out_channels

    def forward(self, x):
        n, channels, height, width = x.shape
        # In channels-last the duplicated channels are adjacent in memory: one cheap copy.
        doubled = (_channels_last(x).permute(0, 2, 3, 1).unsqueeze(-1)
                   .expand(n, height, width, channels, 2).reshape(n, height, width, 2 * channels))
        return self.conv(doubled.permute(0, 3, 1, 2))


class FusedDownsample(nn.Module):
    """Deploy form of :class:`Downsample`: BN-folded stride-2 conv, then ``x + MLP(x)``."""

    def __init__(self, token_mixer: nn.Conv2d, channel_mixer: nn.Sequential):
        super().__init__()
        self.token_mixer = ChannelDoublingDepthwiseConv(token_mixer)
        self.channel_mixer = FusedConvMLP(channel_mixer)

    def forward(self, x):
        x = self.token_mixer(x)
        return self.channel_mixer(x, x)


class RecNeXtBackbone(MultiScaleBackbone):
    """RecNeXt-M trunk for dense prediction: stage features at strides 4/8/16/32.

    Registered in mmdet's and mmseg's MODELS as ``type='RecNeXt', arch='m3'``; see
    :class:`MultiScaleBackbone` for out_indices, frozen_stages, norm_eval, deploy and
    init_cfg.
    """

    family = 'RecNeXt'
    archs = RECNEXT_ARCHS

    def build(self, arch: str, drop_path_rate: float, in_channels: int):
        self.stem, stages, info = build_trunk(arch, in_channels, drop_path_rate)
        self.stages = nn.ModuleList(stages)
        return info


def _cfg(**kwargs) -> dict:
    return dict(url='', num_classes=1000, input_size=(3, 224, 224), pool_size=(7, 7),
                crop_pct=0.95, interpolation='bicubic', mean=IMAGENET_DEFAULT_MEAN,
                std=IMAGENET_DEFAULT_STD, first_conv='stem.stem.0.conv',
                classifier=('head.head.linear', 'head.head_dist.linear'), **kwargs)


# timm's register_model picks these up by module; no download URLs are pinned.
default_cfgs = generate_default_cfgs({f'recnext_{arch}': _cfg() for arch in RECNEXT_ARCHS})


def _create(variant: str, arch: str, pretrained: bool = False, **kwargs) -> RecNeXt:
    out_indices = kwargs.pop('out_indices', (0, 1, 2, 3))
    return build_model_with_cfg(
        RecNeXt, variant, pretrained, arch=arch,
        feature_cfg=dict(flatten_sequential=True, out_indices=out_indices), **kwargs)


def _register(arch: str):
    def factory(pretrained: bool = False, **kwargs) -> RecNeXt:
        return _create(f'recnext_{arch}', arch, pretrained, **kwargs)
    factory.__name__ = f'recnext_{arch}'
    factory.__doc__ = f'RecNeXt-{arch.upper()} (dims {RECNEXT_ARCHS[arch][0]}, depths {RECNEXT_ARCHS[arch][1]}).'
    factory.__module__ = __name__
    return register_model(factory)


for _arch in RECNEXT_ARCHS:
    globals()[f'recnext_{_arch}'] = _register(_arch)
