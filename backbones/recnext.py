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
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from torch import nn

from ._fusion import fuse_bn_linear, fuse_conv_bn, fuse_modules
from .hub import fetch_pretrained, timm_release_cfgs
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
        self.down = nn.Conv2d(stride=2, **conv_args)
        self.convs = nn.ModuleList(nn.Conv2d(**conv_args) for _ in range(level + 1))

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
        self.norm = nn.Identity()
        return self


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
        self.token_mixer = fuse_conv_bn(self.token_mixer, self.norm)
        self.norm = nn.Identity()
        return self


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
    return dict(num_classes=1000, pool_size=(7, 7), first_conv='stem.stem.0.conv',
                classifier=('head.head.linear', 'head.head_dist.linear'), **kwargs)


# The authors' releases (url, crop, interpolation) come from backbones/hub.py:
# recnext_m3.dist_in1k (default) and recnext_m3.in1k.
default_cfgs = generate_default_cfgs(timm_release_cfgs([f'recnext_{arch}' for arch in RECNEXT_ARCHS], _cfg))


def _create(variant: str, arch: str, pretrained: bool = False, **kwargs) -> RecNeXt:
    out_indices = kwargs.pop('out_indices', (0, 1, 2, 3))
    return build_model_with_cfg(
        RecNeXt, variant, pretrained, arch=arch,
        feature_cfg=dict(flatten_sequential=True, out_indices=out_indices),
        **fetch_pretrained(variant, pretrained, kwargs))


def _register(arch: str):
    def factory(pretrained: bool = False, **kwargs) -> RecNeXt:
        return _create(f'recnext_{arch}', arch, pretrained, **kwargs)
    factory.__name__ = f'recnext_{arch}'
    factory.__doc__ = f'RecNeXt-{arch.upper()} (dims {RECNEXT_ARCHS[arch][0]}, depths {RECNEXT_ARCHS[arch][1]}).'
    factory.__module__ = __name__
    return register_model(factory)


for _arch in RECNEXT_ARCHS:
    globals()[f'recnext_{_arch}'] = _register(_arch)
