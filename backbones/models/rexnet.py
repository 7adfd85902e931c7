"""ReXNet, ReXNet-R and ReXNet-lite: classifiers through timm, dense backbones for mm.

Reference: Han et al., "Rethinking Channel Dimensions for Efficient Model Design"
(CVPR 2021, https://github.com/clovaai/rexnet).

* ReXNet (``rexnet_100`` ... ``rexnet_300``) and ReXNet-R (``rexnetr_*``, channels rounded
  to multiples of 8) are timm's own ``RexNet``, not re-implemented here. This family takes
  over timm's names (with timm's pretrained cfgs, so timm's weights load as before) to
  build :class:`ReXNet`: timm's model with plain norm layers (SyncBN keeps its
  activations), whose checkpoint filter also reads clovaai's files. ``rexnet_090`` and
  ``rexnet_220``, the widths of clovaai's COCO results, are ``RexNet(width_mult=0.9 / 2.2)``
  (timm registers only 1.0/1.3/1.5/2.0/3.0); clovaai released no ImageNet weights for them.
* ReXNet-lite (no SE, ReLU6 everywhere) exists only in clovaai's repository. It is
  implemented below and registered with timm as ``rexnet_lite_100/_130/_150/_200``; its
  parameter names are clovaai's exactly, so their lite checkpoints load strictly.
* clovaai's full ReXNetV1 checkpoints hold the same tensors as timm's ``rexnet_*`` under
  other names (and a 1x1-conv classifier where timm has a Linear):
  :func:`clovaai_to_timm` maps them (the family's checkpoint filter, timm's
  ``pretrained_filter_fn``: ``pretrained_cfg_overlay=dict(file=...)`` reads either layout).

:class:`ReXNetBackbone` is the dense-prediction trunk registered as ``type='ReXNet'``.
"""
import re
import warnings
from typing import Dict, List, NamedTuple, Optional, Tuple

import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import DropPath, make_divisible
from timm.models import generate_default_cfgs, register_model
from timm.models import rexnet as timm_rexnet
from torch import nn

from ..errors import CheckpointError
from .layers.fusion import fuse_conv_bn, fuse_modules
from .layers.norm_act import split_norm_activations
from .registry import Family, Model, register
from .timm_features import TimmFeaturesBackbone
from .timm_models import TimmClassifier, create_timm_model

__all__ = ['ReXNet', 'ReXNetLite', 'ReXNetBackbone', 'REXNET_ARCHS', 'ReXNetArch',
           'clovaai_to_timm', 'is_clovaai_rexnet', 'filter_checkpoint']

# Blocks per group and each group's first stride (the rest have stride 1); both ReXNets.
GROUP_DEPTHS = (1, 2, 2, 3, 3, 5)
GROUP_STRIDES = (1, 2, 2, 2, 1, 2)
EXPANSION = 6  # every block but the first expands its input 6x before the depthwise conv


class ReXNetArch(NamedTuple):
    model: str  # timm model name
    width_mult: float
    series: str  # 'rexnet' (SE, SiLU), 'rexnetr' (ReXNet with channels rounded), 'lite' (no SE, ReLU6)
    ch_div: int = 1  # every width a multiple of this (ReXNet-R: 8, and 16 at 3.0, as timm's rexnetr_*)


def width_tag(width_mult: float) -> str:
    """timm's name suffix of a width: 0.9 -> '090', 2.2 -> '220'."""
    return f'{round(width_mult * 100):03d}'


# timm registers rexnet_* and rexnetr_* at these widths; clovaai's COCO results also use
# 0.9 and 2.2, which are timm's RexNet(width_mult=w) too and are registered here.
TIMM_WIDTHS = (1.0, 1.3, 1.5, 2.0, 3.0)
OWN_WIDTHS = (0.9, 2.2)
LITE_WIDTHS = (1.0, 1.3, 1.5, 2.0)  # clovaai's ReXNet-lite releases

# mm arch -> model. Plain widths are ReXNet, 'r_' ReXNet-R, 'lite_' ReXNet-lite.
REXNET_ARCHS: Dict[str, ReXNetArch] = {
    **{f'{w}': ReXNetArch(f'rexnet_{width_tag(w)}', w, 'rexnet') for w in sorted(TIMM_WIDTHS + OWN_WIDTHS)},
    **{f'r_{w}': ReXNetArch(f'rexnetr_{width_tag(w)}', w, 'rexnetr', 16 if w == 3.0 else 8) for w in TIMM_WIDTHS},
    **{f'lite_{w}': ReXNetArch(f'rexnet_lite_{width_tag(w)}', w, 'lite') for w in LITE_WIDTHS},
}
# timm's blocks have conv_dw; clovaai's (full and lite) keep their layers in '.out'.
KEY_SIGNATURE = r'features[._]\d+\.(conv_dw\.conv|out\.\d+)\.weight$'


# ---- ReXNet and ReXNet-R: timm's model -------------------------------------------------
class ReXNet(timm_rexnet.RexNet):
    """timm's ``RexNet`` (its layout, weights and feature API) with plain norm layers: each
    activation is applied by the layer that holds the norm, so SyncBN conversion keeps it."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        split_norm_activations(self)

    def switch_to_deploy(self) -> 'ReXNet':
        """The deploy form is the model itself: timm's ReXNet has no BN-folded form (the lite one has)."""
        return self

    def fuse(self) -> 'ReXNet':
        """timm's name for :meth:`switch_to_deploy`."""
        return self.switch_to_deploy()


# ---- ReXNet-lite ---------------------------------------------------------------------
def conv_bn(in_channels: int, out_channels: int, kernel_size: int = 1, stride: int = 1,
            groups: int = 1, relu6: bool = True) -> List[nn.Module]:
    """Bias-free conv, BN and optionally ReLU6, as separate entries (clovaai's indices)."""
    layers = [nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2,
                        groups=groups, bias=False),
              nn.BatchNorm2d(out_channels)]
    return layers + [nn.ReLU6(inplace=True)] if relu6 else layers


@torch.no_grad()
def fold_conv_bn_siblings(container: nn.Module) -> nn.Module:
    """Fold every BatchNorm2d that directly follows a Conv2d among ``container``'s children
    into that conv (the BN becomes Identity, so the other children keep their names)."""
    children = list(container.named_children())
    for (conv_name, conv), (norm_name, norm) in zip(children, children[1:]):
        if isinstance(conv, nn.Conv2d) and type(norm) is nn.BatchNorm2d:
            setattr(container, conv_name, fuse_conv_bn(conv, norm))
            setattr(container, norm_name, nn.Identity())
    return container


class LiteBottleneck(nn.Module):
    """[1x1 expand -> BN -> ReLU6] -> 3x3 depthwise -> BN -> ReLU6 -> 1x1 -> BN.

    ReXNet's partial residual: where the stride is 1 and the block does not narrow, the
    input is added to the first ``in_channels`` output channels only.
    """

    def __init__(self, in_channels: int, out_channels: int, expansion: int, stride: int,
                 drop_path: float = 0.0):
        super().__init__()
        self.in_channels = in_channels
        self.use_shortcut = stride == 1 and in_channels <= out_channels
        hidden = in_channels * expansion
        layers = conv_bn(in_channels, hidden) if expansion != 1 else []
        layers += conv_bn(hidden, hidden, 3, stride, groups=hidden)
        layers += conv_bn(hidden, out_channels, relu6=False)
        self.out = nn.Sequential(*layers)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x):
        out = self.out(x)
        if not self.use_shortcut:
            return out
        out = self.drop_path(out)
        return torch.cat([out[:, :self.in_channels] + x, out[:, self.in_channels:]], dim=1)

    def fuse(self) -> nn.Module:
        fold_conv_bn_siblings(self.out)
        return self


def lite_channels(multiplier: float, initial: int = 16, final: int = 164
                  ) -> Tuple[int, List[Tuple[int, int]], int]:
    """(stem channels, [(in, out) per block], penultimate channels) of ReXNet-lite.

    Block widths grow linearly with the block index from ``initial`` by ``final`` in all,
    scaled by ``multiplier`` and rounded to multiples of 8 (as clovaai computes them).
    """
    def width(value: float) -> int:
        return make_divisible(int(round(value * multiplier)), 8)

    base = initial / multiplier if multiplier < 1.0 else initial
    stem = width(32 / multiplier if multiplier < 1.0 else 32)
    num_blocks = sum(GROUP_DEPTHS)
    blocks = [(stem, width(base))]
    for _ in range(num_blocks - 1):
        in_channels = width(base)
        base += final / (num_blocks - 1)
        blocks.append((in_channels, width(base)))
    penultimate = int(1280 * multiplier) if multiplier > 1.0 else 1280
    return stem, blocks, penultimate


def block_strides() -> List[int]:
    """Each block's stride: a group's first block has the group's stride, the rest 1."""
    return [stride if i == 0 else 1
            for depth, stride in zip(GROUP_DEPTHS, GROUP_STRIDES) for i in range(depth)]


class ReXNetLite(TimmClassifier):
    """ReXNet-lite ImageNet classifier (timm model), in clovaai's parameter layout."""

    def __init__(self, multiplier: float = 1.0, in_chans: int = 3, num_classes: int = 1000,
                 drop_rate: float = 0.2, drop_path_rate: float = 0.0, head_channels: int = 1024):
        super().__init__()
        self.num_classes = num_classes
        self.drop_rate = drop_rate
        self.head_channels = head_channels
        stem, blocks, penultimate = lite_channels(multiplier)
        layers = conv_bn(in_chans, stem, 3, stride=2)
        self.feature_info, reduction = [], 2
        strides = block_strides()
        for index, ((in_channels, out_channels), stride) in enumerate(zip(blocks, strides)):
            if stride > 1:  # the previous layer's output is the last one at this resolution
                self.feature_info.append(dict(num_chs=in_channels, reduction=reduction,
                                              module=f'features.{len(layers) - 1}'))
                reduction *= stride
            rate = drop_path_rate * index / (len(blocks) - 1)
            layers.append(LiteBottleneck(in_channels, out_channels, 1 if index == 0 else EXPANSION,
                                         stride, rate))
        self.feature_info.append(dict(num_chs=blocks[-1][1], reduction=reduction,
                                      module=f'features.{len(layers) - 1}'))
        layers += conv_bn(blocks[-1][1], penultimate)
        self.features = nn.Sequential(*layers)
        # The entry of `features` that ends each level (the 1x1 conv after the last one feeds the head).
        self.stage_ends = [int(info['module'].split('.')[-1]) for info in self.feature_info]
        self.num_features = self.head_hidden_size = penultimate
        self.output = self.make_head(num_classes)

    def make_head(self, num_classes: int) -> nn.Module:
        """1x1 conv (bias) -> BN -> ReLU6 -> dropout -> 1x1 conv classifier, on pooled features."""
        if num_classes <= 0:
            return nn.Identity()
        return nn.Sequential(
            nn.Conv2d(self.num_features, self.head_channels, 1), nn.BatchNorm2d(self.head_channels),
            nn.ReLU6(inplace=True), nn.Dropout(self.drop_rate),
            nn.Conv2d(self.head_channels, num_classes, 1))

    def get_classifier(self) -> nn.Module:
        return self.output

    def reset_classifier(self, num_classes: int, global_pool=None):
        self.num_classes = num_classes
        self.output = self.make_head(num_classes)

    # timm's feature API, as timm's RexNet: five levels at strides 2 to 32; the 1x1 conv after
    # the last one feeds only the head, so pruning the head drops it too.
    def trunk_steps(self):
        return self.features

    def level_ends(self):
        return self.stage_ends

    def keep_steps(self, count: int):
        self.features = self.features[:count]

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        # features.0-2: the stem's conv, BN and ReLU6; then one entry per block, and the final conv.
        return dict(stem=r'^features\.[012]\.', blocks=r'^features\.(\d+)')

    def forward_head(self, x, pre_logits: bool = False):
        x = x.mean((2, 3), keepdim=True)
        return x.flatten(1) if pre_logits else self.output(x).flatten(1)

    def switch_to_deploy(self) -> nn.Module:
        """Deploy form, in place: every BN folded into the conv before it."""
        fold_conv_bn_siblings(self.features)
        if isinstance(self.output, nn.Sequential):
            fold_conv_bn_siblings(self.output)
        return fuse_modules(self)


# ---- clovaai's full ReXNetV1 layout -> timm's ------------------------------------------
_CLOVAAI_SE = re.compile(r'^features\.\d+\.out\.\d+\.fc\.')
_FEATURES_KEY = re.compile(r'^features\.(\d+)\.(.+)$')
_BLOCK_LAYER = re.compile(r'^out\.(\d+)\.(.+)$')
# clovaai SE: fc = (conv, BN, ReLU, conv, Sigmoid); timm's SEModule names them.
_SE_NAMES = {'0': 'fc1', '1': 'bn', '3': 'fc2'}
# A block's (conv, BN) pairs in order: with or without the 1x1 expansion.
_BLOCK_LAYER_NAMES = {2: ('conv_dw', 'conv_pwl'), 3: ('conv_exp', 'conv_dw', 'conv_pwl')}


def is_clovaai_rexnet(state_dict) -> bool:
    """clovaai's full ReXNetV1 layout: SE layers inside '.out' Sequentials (timm has '.se')."""
    return any(_CLOVAAI_SE.match(key) for key in state_dict)


def _block_layer_names(block_keys: List[str], block: int) -> Dict[int, str]:
    """{index in the block's '.out' Sequential: timm 'conv_x.conv' / 'conv_x.bn'} for one block."""
    indices = sorted({int(m.group(1)) for key in block_keys
                      if (m := _BLOCK_LAYER.match(key)) and not m.group(2).startswith('fc.')})
    names = _BLOCK_LAYER_NAMES.get(len(indices) // 2) if len(indices) % 2 == 0 else None
    if names is None:
        raise CheckpointError(f'clovaai ReXNet block features.{block} has {len(indices)} conv/BN layers; '
                              'expected 4 or 6 (is it a ReXNetV1 checkpoint?)')
    layers = {}
    for name, conv, norm in zip(names, indices[0::2], indices[1::2]):
        layers[conv], layers[norm] = f'{name}.conv', f'{name}.bn'
    return layers


def clovaai_to_timm(state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """clovaai ReXNetV1 key layout -> timm ``RexNet``'s, same tensors.

    clovaai's ``features`` holds stem conv/BN/SiLU, the blocks (``features.N.out.*``), and
    the final 1x1 conv/BN; timm splits off ``stem`` and numbers the blocks from 0. The
    classifier's 1x1 conv (``output.1``) becomes timm's Linear ``head.fc``.
    """
    by_index: Dict[int, Dict[str, str]] = {}
    for key in state_dict:
        m = _FEATURES_KEY.match(key)
        if m:
            by_index.setdefault(int(m.group(1)), {})[m.group(2)] = key
    blocks = sorted(i for i, rests in by_index.items() if any(r.startswith('out.') for r in rests))
    if not blocks:
        raise CheckpointError('no clovaai ReXNet blocks (features.N.out.*) found in the checkpoint')
    first, last = blocks[0], blocks[-1]
    # Outside the blocks only conv/BN pairs carry tensors: stem at 0/1, final conv after the blocks.
    plain = {0: 'stem.conv', 1: 'stem.bn', last + 1: f'features.{len(blocks)}.conv',
             last + 2: f'features.{len(blocks)}.bn'}
    layer_names = {index: _block_layer_names(list(by_index[index]), index) for index in blocks}
    converted = {}
    for key, value in state_dict.items():
        m = _FEATURES_KEY.match(key)
        if key in ('output.1.weight', 'output.1.bias'):
            new_key = 'head.fc.' + key.rsplit('.', 1)[1]
            value = value.flatten(1) if value.dim() == 4 else value
        elif m is None:
            raise CheckpointError(f'unexpected key in a clovaai ReXNet checkpoint: {key}')
        elif int(m.group(1)) in blocks:
            index, rest = int(m.group(1)), m.group(2)
            layer, param = _BLOCK_LAYER.match(rest).groups()
            se = re.match(r'^fc\.(\d+)\.(.+)$', param)
            if se and se.group(1) in _SE_NAMES:
                name = f'se.{_SE_NAMES[se.group(1)]}.{se.group(2)}'
            else:
                name = f'{layer_names[index][int(layer)]}.{param}'
            new_key = f'features.{index - first}.{name}'
        elif int(m.group(1)) in plain:
            new_key = f'{plain[int(m.group(1))]}.{m.group(2)}'
        else:
            raise CheckpointError(f'unexpected key in a clovaai ReXNet checkpoint: {key}')
        converted[new_key] = value
    return converted


def filter_checkpoint(state_dict: Dict[str, torch.Tensor], model: Optional[nn.Module] = None
                      ) -> Dict[str, torch.Tensor]:
    """The family's checkpoint filter: clovaai's full ReXNetV1 layout -> timm's; timm's own
    and clovaai's lite layout (which ReXNetLite has) unchanged."""
    return clovaai_to_timm(state_dict) if is_clovaai_rexnet(state_dict) else state_dict


_BLOCK_KEY = re.compile(r'^features\.(\d+)\.(out|conv_dw)\.')


def drop_final_conv(state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Drop the 1x1 conv (+BN) after the last block: it only feeds the classifier, and
    timm's feature extractor ends at the last block (stride-32 level)."""
    blocks = [int(m.group(1)) for key in state_dict if (m := _BLOCK_KEY.match(key))]
    if not blocks:
        return state_dict
    last = max(blocks)
    return {key: value for key, value in state_dict.items()
            if not ((m := _FEATURES_KEY.match(key)) and int(m.group(1)) > last)}


# ---- dense-prediction backbone ----------------------------------------------------------
class ReXNetBackbone(TimmFeaturesBackbone):
    """ReXNet / ReXNet-R / ReXNet-lite trunk: stage features at strides 4/8/16/32.

    Registered in mmdet's and mmseg's MODELS as ``type='ReXNet'``; ``arch`` is the width
    ('0.9', '1.0', '1.3', '1.5', '2.0', '2.2', '3.0'), 'r_<width>' for ReXNet-R (1.0 to 3.0,
    as timm), or 'lite_<width>' ('lite_1.0', 'lite_1.3', 'lite_1.5', 'lite_2.0'). ``init_cfg``
    takes a timm classifier checkpoint, a clovaai one (full or lite), or a converted backbone
    checkpoint. The lite archs have a deploy form (BN folded); timm's ReXNets do not.
    """

    archs = REXNET_ARCHS
    classifier_prefixes = ('head', 'output')  # timm's Linear head, clovaai's conv head
    flattened_containers = ('features',)

    def timm_name(self, arch: str) -> str:
        return self.archs[arch].model

    def has_deploy_form(self, arch: str) -> bool:
        return self.archs[arch].series == 'lite'

    def switch_to_deploy(self) -> 'ReXNetBackbone':
        if not self.fused:
            fold_conv_bn_siblings(self.body)  # the stem's conv and BN are siblings in body
        return super().switch_to_deploy()

    @classmethod
    def remap_classifier_keys(cls, state_dict):
        """clovaai full -> timm layout; drop the classifier-only final conv; -> ``body.`` keys."""
        return super().remap_classifier_keys(drop_final_conv(filter_checkpoint(state_dict)))


# ---- the family ----------------------------------------------------------------------------
FAMILY = register(Family(
    type='ReXNet', backbone=ReXNetBackbone, classifiers=(ReXNet, ReXNetLite), archs=REXNET_ARCHS,
    models={spec.model: Model(arch) for arch, spec in REXNET_ARCHS.items()}, key_signature=KEY_SIGNATURE,
    checkpoint_filter=filter_checkpoint))


def _cfg(first_conv: str = 'stem.conv', classifier: str = 'head.fc') -> dict:
    """timm's RexNet cfg; no download URL (clovaai's releases are on Google Drive)."""
    return dict(url='', num_classes=1000, input_size=(3, 224, 224), pool_size=(7, 7),
                crop_pct=0.875, interpolation='bicubic', mean=IMAGENET_DEFAULT_MEAN,
                std=IMAGENET_DEFAULT_STD, first_conv=first_conv, classifier=classifier, license='mit')


# timm reads this module's default_cfgs when the factories below register. The names timm
# registers itself keep timm's pretrained cfgs (its weights, tags and preprocessing); the
# others (0.9, 2.2, lite) have no download.
default_cfgs = {
    **generate_default_cfgs({name: _cfg('features.0', 'output.4') if REXNET_ARCHS[entry.arch].series == 'lite'
                             else _cfg() for name, entry in FAMILY.models.items()}),
    **{name: cfg for name, cfg in timm_rexnet.default_cfgs.items() if name in FAMILY.models},
}
# The factories below take over timm's own rexnet_* / rexnetr_* names on purpose; timm
# warns about each name it sees registered twice.
warnings.filterwarnings('ignore', message=r'Overwriting rexnetr?_\d+ in registry', category=UserWarning)


def _create_rexnet(name: str, pretrained: bool = False, **kwargs) -> nn.Module:
    spec = REXNET_ARCHS[FAMILY.models[name].arch]
    if spec.series == 'lite':
        model_cls, arguments = ReXNetLite, dict(multiplier=spec.width_mult)
    else:
        model_cls, arguments = ReXNet, dict(width_mult=spec.width_mult, ch_div=spec.ch_div)
    # flatten_sequential: the feature levels are entries of the 'features' Sequential (both models).
    return create_timm_model(FAMILY, name, pretrained, model_cls, arguments, dict(flatten_sequential=True), **kwargs)


@register_model
def rexnet_090(pretrained: bool = False, **kwargs) -> ReXNet:
    """ReXNet 0.9x (clovaai's COCO width; no ImageNet weights)."""
    return _create_rexnet('rexnet_090', pretrained, **kwargs)


@register_model
def rexnet_100(pretrained: bool = False, **kwargs) -> ReXNet:
    """ReXNet 1.0x."""
    return _create_rexnet('rexnet_100', pretrained, **kwargs)


@register_model
def rexnet_130(pretrained: bool = False, **kwargs) -> ReXNet:
    """ReXNet 1.3x."""
    return _create_rexnet('rexnet_130', pretrained, **kwargs)


@register_model
def rexnet_150(pretrained: bool = False, **kwargs) -> ReXNet:
    """ReXNet 1.5x."""
    return _create_rexnet('rexnet_150', pretrained, **kwargs)


@register_model
def rexnet_200(pretrained: bool = False, **kwargs) -> ReXNet:
    """ReXNet 2.0x."""
    return _create_rexnet('rexnet_200', pretrained, **kwargs)


@register_model
def rexnet_220(pretrained: bool = False, **kwargs) -> ReXNet:
    """ReXNet 2.2x (clovaai's COCO width; no ImageNet weights)."""
    return _create_rexnet('rexnet_220', pretrained, **kwargs)


@register_model
def rexnet_300(pretrained: bool = False, **kwargs) -> ReXNet:
    """ReXNet 3.0x."""
    return _create_rexnet('rexnet_300', pretrained, **kwargs)


@register_model
def rexnetr_100(pretrained: bool = False, **kwargs) -> ReXNet:
    """ReXNet-R 1.0x (channels rounded to multiples of 8)."""
    return _create_rexnet('rexnetr_100', pretrained, **kwargs)


@register_model
def rexnetr_130(pretrained: bool = False, **kwargs) -> ReXNet:
    """ReXNet-R 1.3x (channels rounded to multiples of 8)."""
    return _create_rexnet('rexnetr_130', pretrained, **kwargs)


@register_model
def rexnetr_150(pretrained: bool = False, **kwargs) -> ReXNet:
    """ReXNet-R 1.5x (channels rounded to multiples of 8)."""
    return _create_rexnet('rexnetr_150', pretrained, **kwargs)


@register_model
def rexnetr_200(pretrained: bool = False, **kwargs) -> ReXNet:
    """ReXNet-R 2.0x (channels rounded to multiples of 8)."""
    return _create_rexnet('rexnetr_200', pretrained, **kwargs)


@register_model
def rexnetr_300(pretrained: bool = False, **kwargs) -> ReXNet:
    """ReXNet-R 3.0x (channels rounded to multiples of 8)."""
    return _create_rexnet('rexnetr_300', pretrained, **kwargs)


@register_model
def rexnet_lite_100(pretrained: bool = False, **kwargs) -> ReXNetLite:
    """ReXNet-lite 1.0x (clovaai's ReXNetV1_lite: no SE, ReLU6)."""
    return _create_rexnet('rexnet_lite_100', pretrained, **kwargs)


@register_model
def rexnet_lite_130(pretrained: bool = False, **kwargs) -> ReXNetLite:
    """ReXNet-lite 1.3x (clovaai's ReXNetV1_lite: no SE, ReLU6)."""
    return _create_rexnet('rexnet_lite_130', pretrained, **kwargs)


@register_model
def rexnet_lite_150(pretrained: bool = False, **kwargs) -> ReXNetLite:
    """ReXNet-lite 1.5x (clovaai's ReXNetV1_lite: no SE, ReLU6)."""
    return _create_rexnet('rexnet_lite_150', pretrained, **kwargs)


@register_model
def rexnet_lite_200(pretrained: bool = False, **kwargs) -> ReXNetLite:
    """ReXNet-lite 2.0x (clovaai's ReXNetV1_lite: no SE, ReLU6)."""
    return _create_rexnet('rexnet_lite_200', pretrained, **kwargs)
