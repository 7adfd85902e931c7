"""ConvNeXt-1D / 1D++ / 2D / 2D++: ConvNeXt with oriented 1D depthwise kernels.

Reference: Kirchmeyer & Deng, "Convolutional Networks with Oriented 1D Kernels" (ICCV 2023,
https://github.com/princeton-vl/Oriented1D). Parameter names follow the authors'
checkpoints exactly (``downsample_layers``, ``stages``, ``theta`` ...), so their
``{'model': ..., 'model_ema': ...}`` files load strictly; the oriented conv is the pure
PyTorch one of :mod:`backbones.oriented_conv`, so every model runs on CPU and CUDA and
takes any input size.

Variants (``block`` = what replaces ConvNeXt's 7x7 depthwise conv):

* ``2d``: the ConvNeXt baseline (7x7);
* ``1d``: an oriented 1x31, and a stem of oriented stride-2 1x31 convs;
* ``1dpp``: an oriented 1x15, plus an oriented 1x31 (with identity) on the 4x hidden
  layer of the MLP, and the stem with 1x15 convs;
* ``2dpp``: the 7x7, plus that oriented 1x31 on the hidden layer.

In 1d, 1dpp and 2dpp the angles of odd blocks of a stage are turned by 90 degrees.

``timm.create_model('convnext_tiny_1dpp')`` builds the ImageNet classifier (``features_only=True``
works, through its ``forward_intermediates``);
:class:`ConvNeXt1DBackbone` is the dense-prediction trunk registered as
``type='ConvNeXt1D', arch='tiny', variant='1dpp'``, with the authors' smaller downstream
kernels and a channels-first LayerNorm on each output.
"""
import re
from collections import OrderedDict
from typing import List, NamedTuple, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import DropPath, LayerNorm2d, trunc_normal_
from timm.models import generate_default_cfgs, register_model
from torch import nn

from .layers.oriented_conv import OrientedConv1d
from .multiscale import BackboneConfigError, MultiScaleBackbone
from .registry import Family, Model, register
from .timm_models import TimmClassifier, create_timm_model, stage_feature_info

__all__ = ['ConvNeXt1D', 'ConvNeXt1DBackbone', 'CONVNEXT1D_ARCHS', 'CONVNEXT1D_VARIANTS', 'TIMM_ARCHS',
           'unwrap_oriented_conv_keys']

class ConvNeXt1DArch(NamedTuple):
    dims: Tuple[int, ...]
    depths: Tuple[int, ...]
    drop_path_rate: float  # default of the ImageNet recipe


CONVNEXT1D_ARCHS = {
    'tiny': ConvNeXt1DArch((96, 192, 384, 768), (3, 3, 9, 3), 0.1),
    'base': ConvNeXt1DArch((128, 256, 512, 1024), (3, 3, 27, 3), 0.5),
    # Reduced width for demos and tests only: no weights are released for it.
    'demo': ConvNeXt1DArch((16, 32, 64, 128), (1, 2, 2, 1), 0.0),
}
CONVNEXT1D_VARIANTS = ('1d', '1dpp', '2d', '2dpp')
# Per stage: (block kernel,) or (block kernel, hidden-layer kernel).
CLASSIFIER_KERNELS = {
    '2d': ((7,),) * 4,
    '1d': ((31,),) * 4,
    '1dpp': ((15, 31),) * 4,
    '2dpp': ((7, 31),) * 4,
}
# The authors' detection / segmentation backbones shrink the kernels of the later stages,
# whose maps are small; the converter centre-crops the classifier's kernels to these.
DOWNSTREAM_KERNELS = {
    '2d': ((7,),) * 4,
    '1d': ((31,), (31,), (27,), (13,)),
    '1dpp': ((15, 31), (15, 31), (15, 27), (13, 13)),
    '2dpp': ((7, 31), (7, 31), (7, 27), (7, 13)),
}
STEM_KERNEL = {'1d': 31, '1dpp': 15}  # the oriented stem of the 1D variants (unchanged downstream)
STEM_HIDDEN = 64
LAYER_SCALE_INIT = 1e-6
# ConvNeXt's trunk names (the 2d variant is exactly facebookresearch/ConvNeXt's layout).
KEY_SIGNATURE = r'^downsample_layers\.\d+\.'
# Oriented1D's detection and segmentation backbones (and their converter's output) wrap every
# oriented conv in ``Wrapper(conv)``: ``stages.0.0.dwconv.conv.weight`` / ``.bias`` / ``.theta``,
# ``dwconv1.conv.*``, ``dwconv2.conv.*``, ``downsample_layers.0.dw1.conv.*``. Group 1 is our key's stem.
WRAPPED_ORIENTED_CONV_KEY = r'^(.*\.(?:dwconv[12]?|dw[12]))\.conv\.(weight|bias|theta)$'


def unwrap_oriented_conv_keys(state_dict, model: Optional[nn.Module] = None):
    """Keys in Oriented1D's ``Wrapper(conv)`` layout -> ours (other keys unchanged): the
    family's checkpoint filter, so timm's loaders read those files too."""
    return OrderedDict((re.sub(WRAPPED_ORIENTED_CONV_KEY, r'\1.\2', key), value)
                       for key, value in state_dict.items())


def check_variant(variant: str) -> str:
    if variant not in CONVNEXT1D_VARIANTS:
        raise BackboneConfigError(f"unknown ConvNeXt1D variant '{variant}': choose one of "
                                  f"{', '.join(CONVNEXT1D_VARIANTS)}")
    return variant


def rotates_odd_blocks(variant: str) -> bool:
    """1d, 1dpp and 2dpp turn the angles of odd blocks (and the stem's second conv) by 90 degrees."""
    return variant != '2d'


class Stem1D(nn.Module):
    """Stride-4 stem of the 1D variants, channels-last inside: Linear 3 -> 64, oriented
    stride-2 conv, LN, GELU, oriented stride-2 conv (turned 90 degrees), LN, GELU,
    Linear 64 -> dims[0], LN."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, hidden: int = STEM_HIDDEN):
        super().__init__()
        self.pw1 = nn.Linear(in_channels, hidden)
        self.pw2 = nn.Linear(hidden, out_channels)
        self.dw1 = OrientedConv1d(hidden, kernel_size, stride=2, data_format='channels_last')
        self.dw2 = OrientedConv1d(hidden, kernel_size, stride=2, angle_offset=0.5, data_format='channels_last')
        self.norm1 = nn.LayerNorm(hidden, eps=1e-6)
        self.norm2 = nn.LayerNorm(hidden, eps=1e-6)
        self.norm3 = nn.LayerNorm(out_channels, eps=1e-6)

    def forward(self, x):
        x = self.pw1(x.permute(0, 2, 3, 1))
        x = F.gelu(self.norm1(self.dw1(x)))
        x = F.gelu(self.norm2(self.dw2(x)))
        return self.norm3(self.pw2(x)).permute(0, 3, 1, 2)


def patchify_stem(in_channels: int, out_channels: int) -> nn.Sequential:
    """ConvNeXt's stem: 4x4 stride-4 conv and a channels-first LN (keys .0 and .1)."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 4, stride=4), LayerNorm2d(out_channels, eps=1e-6))


def downsample(in_channels: int, out_channels: int) -> nn.Sequential:
    """Channels-first LN, then a 2x2 stride-2 conv (keys .0 and .1)."""
    return nn.Sequential(LayerNorm2d(in_channels, eps=1e-6), nn.Conv2d(in_channels, out_channels, 2, stride=2))


def spatial_mixer(dim: int, kernel_size: int, variant: str, angle_offset: float) -> nn.Module:
    """The block's depthwise conv: dense KxK in the 2D variants, oriented 1xK in the 1D ones."""
    if variant.startswith('2d'):
        return nn.Conv2d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)
    return OrientedConv1d(dim, kernel_size, angle_offset=angle_offset)


class Block(nn.Module):
    """ConvNeXt block: x + gamma * MLP(LN(dwconv(x))), the MLP channels-last (Linear layers).

    The ++ variants (``hidden_kernel`` given) add an oriented 1xK conv with identity on the
    4x hidden layer, between pwconv1 + GELU and pwconv2; their spatial conv is then
    called ``dwconv1`` and the hidden one ``dwconv2``, as in the authors' checkpoints.
    """

    def __init__(self, dim: int, variant: str, kernel_size: int, hidden_kernel: Optional[int] = None,
                 angle_offset: float = 0.0, drop_path: float = 0.0):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), LAYER_SCALE_INIT))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.spatial_name = 'dwconv' if hidden_kernel is None else 'dwconv1'
        self.add_module(self.spatial_name, spatial_mixer(dim, kernel_size, variant, angle_offset))
        if hidden_kernel is not None:
            self.dwconv2 = OrientedConv1d(4 * dim, hidden_kernel, angle_offset=angle_offset, resid=True,
                                          data_format='channels_last')
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x):
        y = getattr(self, self.spatial_name)(x).permute(0, 2, 3, 1)
        y = F.gelu(self.pwconv1(self.norm(y)))
        if hasattr(self, 'dwconv2'):
            y = self.dwconv2(y)
        y = self.gamma * self.pwconv2(y)
        return x + self.drop_path(y.permute(0, 3, 1, 2))


def build_trunk(arch: str, variant: str, kernels: Sequence[Sequence[int]], in_channels: int = 3,
                drop_path_rate: float = 0.0):
    """downsample_layers (stem first), stages and their feature_info, shared by the
    classifier and the backbone."""
    spec = CONVNEXT1D_ARCHS[arch]
    dims, depths = spec.dims, spec.depths
    stem = (Stem1D(in_channels, dims[0], STEM_KERNEL[variant]) if variant in STEM_KERNEL
            else patchify_stem(in_channels, dims[0]))
    downsample_layers = nn.ModuleList([stem] + [downsample(dims[i], dims[i + 1]) for i in range(3)])
    rates = torch.linspace(0, drop_path_rate, sum(depths), device='cpu').tolist()  # cpu: also under meta
    stages, start = nn.ModuleList(), 0
    for dim, depth, stage_kernels in zip(dims, depths, kernels):
        blocks = [Block(dim, variant, *stage_kernels, drop_path=rates[start + j],
                        angle_offset=(j % 2) / 2 if rotates_odd_blocks(variant) else 0.0)
                  for j in range(depth)]
        stages.append(nn.Sequential(*blocks))
        start += depth
    return downsample_layers, stages, stage_feature_info(dims)


def _init_weights(module: nn.Module):
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


class ConvNeXt1D(TimmClassifier):
    """ConvNeXt-1D/1D++/2D/2D++ ImageNet classifier (timm model)."""

    def __init__(self, arch: str = 'tiny', variant: str = '1dpp', in_chans: int = 3, num_classes: int = 1000,
                 global_pool: str = 'avg', drop_rate: float = 0.0, drop_path_rate: Optional[float] = None):
        super().__init__()
        if drop_path_rate is None:
            drop_path_rate = CONVNEXT1D_ARCHS[arch].drop_path_rate
        self.variant, self.num_classes, self.global_pool = check_variant(variant), num_classes, global_pool
        self.downsample_layers, self.stages, self.feature_info = build_trunk(
            arch, variant, CLASSIFIER_KERNELS[variant], in_chans, drop_path_rate)
        self.num_features = self.head_hidden_size = self.feature_info[-1]['num_chs']
        self.norm = nn.LayerNorm(self.num_features, eps=1e-6)  # after global pooling
        self.head_drop = nn.Dropout(drop_rate)
        self.head = self.make_head(num_classes)
        self.apply(_init_weights)

    def trunk_steps(self) -> List[nn.Module]:
        """downsample_layers[i] then stages[i], for each stage."""
        return [layer for pair in zip(self.downsample_layers, self.stages) for layer in pair]

    def level_ends(self) -> List[int]:
        return [2 * index + 1 for index in range(len(self.stages))]

    def keep_steps(self, count: int):
        self.downsample_layers = self.downsample_layers[:count // 2]
        self.stages = self.stages[:count // 2]

    def make_head(self, num_classes: int) -> nn.Module:
        return nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        # Stage i > 0 opens with downsample_layers[i]; downsample_layers[0] is the stem.
        return dict(stem=r'^downsample_layers\.0\.', blocks=r'^(?:downsample_layers|stages)\.(\d+)' if coarse else [
            (r'^downsample_layers\.(\d+)', (0,)), (r'^stages\.(\d+)\.(\d+)', None)])

    def drop_head(self):
        super().drop_head()
        self.norm = nn.Identity()  # it normalises pooled features: part of the head

    def forward_head(self, x, pre_logits: bool = False):
        if self.global_pool == 'avg':
            x = x.mean((2, 3))
        x = self.head_drop(self.norm(x))
        return x if pre_logits else self.head(x)


class ConvNeXt1DBackbone(MultiScaleBackbone):
    """ConvNeXt-1D/1D++/2D/2D++ trunk for dense prediction: features at strides 4/8/16/32.

    Registered in mmdet's and mmseg's MODELS as ``type='ConvNeXt1D', arch='tiny',
    variant='1dpp'``. Uses the authors' downstream kernel sizes (``DOWNSTREAM_KERNELS``)
    and adds a channels-first LayerNorm ``norm{i}`` on each output. The trunk keeps the
    checkpoint names ``downsample_layers`` and ``stages``, so mmdet's and mmseg's own
    ``LearningRateDecayOptimizerConstructor`` assigns ConvNeXt's layer ids unchanged.
    Stage 0 is downsample_layers[0] (the stem) + stages[0]; stage i > 0 includes
    downsample_layers[i]. See :class:`MultiScaleBackbone` for the other arguments.
    """

    archs = CONVNEXT1D_ARCHS
    classifier_prefixes = ('head', 'norm')
    crop_classifier_kernels = True
    # The output norms exist only in the backbone; a classifier checkpoint leaves them at init.
    backbone_only_prefixes = ('norm0', 'norm1', 'norm2', 'norm3')
    default_variant = '1dpp'

    def __init__(self, arch: str = 'tiny', variant: Optional[str] = None, **kwargs):
        self.variant = check_variant(variant or self.default_variant)
        super().__init__(arch, **kwargs)
        # Only for the returned stages, so that every parameter gets a gradient (DDP).
        for index, info in zip(self.out_indices, self.feature_info):
            self.add_module(f'norm{index}', LayerNorm2d(info['num_chs'], eps=1e-6))

    def build(self, arch: str, drop_path_rate: float, in_channels: int) -> List[dict]:
        self.downsample_layers, self.stages, info = build_trunk(
            arch, self.variant, DOWNSTREAM_KERNELS[self.variant], in_channels, drop_path_rate)
        self.apply(_init_weights)
        return info

    def forward_stages(self, x, last: int):
        for index in range(last + 1):
            x = self.stages[index](self.downsample_layers[index](x))
            norm = getattr(self, f'norm{index}', None)
            yield x if norm is None else norm(x)

    def stem_modules(self) -> List[nn.Module]:
        return [self.downsample_layers[0]]

    def stage_modules(self, index: int) -> List[nn.Module]:
        modules = [self.stages[index]]
        if index > 0:
            modules.insert(0, self.downsample_layers[index])
        return modules

    @classmethod
    def remap_classifier_keys(cls, state_dict):
        """Oriented1D's mmdet / mmseg layout (every oriented conv in a ``Wrapper``) -> ours."""
        return unwrap_oriented_conv_keys(state_dict)


# ---- the family --------------------------------------------------------------------------
TIMM_ARCHS = ('tiny', 'base')  # the archs with ImageNet classifiers (demo is for tests and demos)

FAMILY = register(Family(
    type='ConvNeXt1D', backbone=ConvNeXt1DBackbone, classifiers=(ConvNeXt1D,), archs=CONVNEXT1D_ARCHS,
    models={f'convnext_{arch}_{variant}': Model(arch, dict(variant=variant))
            for arch in TIMM_ARCHS for variant in CONVNEXT1D_VARIANTS},
    key_signature=KEY_SIGNATURE, checkpoint_filter=unwrap_oriented_conv_keys,
    variant_option='variant', variants=CONVNEXT1D_VARIANTS))


def _cfg(**kwargs) -> dict:
    return dict(url='', num_classes=1000, input_size=(3, 224, 224), pool_size=(7, 7), crop_pct=0.875,
                interpolation='bicubic', mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD,
                classifier='head', **kwargs)


# timm reads this module's default_cfgs when the factories below register (no download:
# Oriented1D's weights are on Google Drive).
default_cfgs = generate_default_cfgs({
    name: _cfg(first_conv='downsample_layers.0.pw1' if entry.options['variant'] in STEM_KERNEL
               else 'downsample_layers.0.0')
    for name, entry in FAMILY.models.items()})


def _create_convnext1d(name: str, pretrained: bool = False, **kwargs) -> ConvNeXt1D:
    entry = FAMILY.models[name]
    # features_only goes through forward_intermediates (timm's 'getter'): each stage follows its
    # downsample layer, which lives in another container, so there is no flat module order.
    return create_timm_model(FAMILY, name, pretrained, ConvNeXt1D, dict(arch=entry.arch, **entry.options),
                             dict(feature_cls='getter', out_indices=(0, 1, 2, 3)), **kwargs)


@register_model
def convnext_tiny_1d(pretrained: bool = False, **kwargs) -> ConvNeXt1D:
    """ConvNeXt-Tiny-1D (Oriented1D)."""
    return _create_convnext1d('convnext_tiny_1d', pretrained, **kwargs)


@register_model
def convnext_tiny_1dpp(pretrained: bool = False, **kwargs) -> ConvNeXt1D:
    """ConvNeXt-Tiny-1D++ (Oriented1D)."""
    return _create_convnext1d('convnext_tiny_1dpp', pretrained, **kwargs)


@register_model
def convnext_tiny_2d(pretrained: bool = False, **kwargs) -> ConvNeXt1D:
    """ConvNeXt-Tiny-2D, the ConvNeXt baseline of Oriented1D."""
    return _create_convnext1d('convnext_tiny_2d', pretrained, **kwargs)


@register_model
def convnext_tiny_2dpp(pretrained: bool = False, **kwargs) -> ConvNeXt1D:
    """ConvNeXt-Tiny-2D++ (Oriented1D)."""
    return _create_convnext1d('convnext_tiny_2dpp', pretrained, **kwargs)


@register_model
def convnext_base_1d(pretrained: bool = False, **kwargs) -> ConvNeXt1D:
    """ConvNeXt-Base-1D (Oriented1D)."""
    return _create_convnext1d('convnext_base_1d', pretrained, **kwargs)


@register_model
def convnext_base_1dpp(pretrained: bool = False, **kwargs) -> ConvNeXt1D:
    """ConvNeXt-Base-1D++ (Oriented1D)."""
    return _create_convnext1d('convnext_base_1dpp', pretrained, **kwargs)


@register_model
def convnext_base_2d(pretrained: bool = False, **kwargs) -> ConvNeXt1D:
    """ConvNeXt-Base-2D, the ConvNeXt baseline of Oriented1D."""
    return _create_convnext1d('convnext_base_2d', pretrained, **kwargs)


@register_model
def convnext_base_2dpp(pretrained: bool = False, **kwargs) -> ConvNeXt1D:
    """ConvNeXt-Base-2D++ (Oriented1D)."""
    return _create_convnext1d('convnext_base_2dpp', pretrained, **kwargs)
