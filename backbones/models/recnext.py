"""RecNeXt: recursive large-kernel token mixers on a MetaNeXt trunk.

Reference: Zhao et al., "RecConv: Efficient Recursive Convolutions for Multi-Frequency
Representations" (https://github.com/suous/RecNeXt). Two series share the trunk:

* M0-M5 mix tokens with :class:`RecConv2d` (recursive depthwise convs, bilinear upsampling);
* A0-A5 mix tokens with :class:`RecAttn2d` (one stride-2 level whose coarse map goes through
  a linear attention, nearest upsampling).

Parameter names follow the authors' checkpoints exactly, so their ``{'model': state_dict}``
files load strictly. ``timm.create_model('recnext_m3')`` / ``('recnext_a3')`` builds the
ImageNet classifier (``features_only=True`` and ``forward_intermediates`` work as in timm's
models); :class:`RecNeXtBackbone` is the dense-prediction trunk that the mm glue registers
as ``type='RecNeXt'``. Both take
``recconv=dict(mode=..., variant=..., kernel_size=...)`` (see :func:`recconv_options`) to
swap in the paper's RecConv variants.
"""
from typing import Callable, List, NamedTuple, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import DropPath, trunc_normal_
from timm.models import generate_default_cfgs, register_model
from torch import nn

from .layers.depthwise import DepthwiseConv2d
from .layers.fusion import fuse_bn_linear, fuse_conv_bn
from .layers.tracing import is_tracing
from .multiscale import BackboneConfigError, MultiScaleBackbone
from .registry import Family, Model, Release, register
from .timm_models import TimmClassifier, create_timm_model, stage_feature_info

__all__ = ['RecNeXt', 'RecNeXtBackbone', 'RecConv2d', 'RecAttn2d', 'LinearAttention',
           'RECNEXT_ARCHS', 'recconv_options']


class RecNeXtArch(NamedTuple):
    dims: Tuple[int, ...]
    depths: Tuple[int, ...]
    drop_path_rate: float  # default of the ImageNet recipe
    mlp_ratio: float  # MLP hidden width = int(dim * mlp_ratio)
    attention: bool  # A-series token mixer (RecAttn2d) instead of RecConv2d


RECNEXT_ARCHS = {
    'm0': RecNeXtArch((40, 80, 160, 320), (2, 2, 9, 1), 0.0, 2, False),
    'm1': RecNeXtArch((48, 96, 192, 384), (3, 3, 15, 2), 0.0, 2, False),
    'm2': RecNeXtArch((56, 112, 224, 448), (3, 3, 15, 2), 0.0, 2, False),
    'm3': RecNeXtArch((64, 128, 256, 512), (3, 3, 13, 2), 0.0, 2, False),
    'm4': RecNeXtArch((64, 128, 256, 512), (5, 5, 25, 4), 0.2, 2, False),
    'm5': RecNeXtArch((80, 160, 320, 640), (7, 7, 35, 2), 0.3, 2, False),
    'a0': RecNeXtArch((40, 80, 160, 320), (2, 2, 9, 1), 0.0, 2, True),
    'a1': RecNeXtArch((48, 96, 192, 384), (3, 3, 15, 2), 0.0, 2, True),
    'a2': RecNeXtArch((56, 112, 224, 448), (3, 3, 15, 2), 0.0, 2, True),
    'a3': RecNeXtArch((64, 128, 256, 512), (3, 3, 13, 2), 0.0, 1.875, True),
    'a4': RecNeXtArch((64, 128, 256, 512), (5, 5, 25, 4), 0.2, 1.875, True),
    'a5': RecNeXtArch((80, 160, 320, 640), (7, 7, 35, 2), 0.3, 1.875, True),
}
UPSAMPLE_MODES = ('bilinear', 'nearest', 'transpose')
RECCONV_VARIANTS = ('shared', 'group', 'split')


def recconv_options(recconv: Optional[dict], attention: bool) -> dict:
    """Validate the user's ``recconv`` dict and fill the series' defaults.

    ``mode``: how a coarse level returns to the finer size: ``'bilinear'`` (M default),
    ``'nearest'`` (A default) or ``'transpose'`` (a depthwise transposed conv, kernel k+1,
    stride 2). ``variant`` (RecConv2d only): ``'shared'`` (the paper's: one stride-2 conv
    reused at every level), ``'group'`` (each level also halves the channels with grouped
    convs; needs ``mode='transpose'`` to restore them) or ``'split'`` (each level recurses on
    half the channels and concatenates the other half on the way up). ``kernel_size``: odd.
    """
    options = dict(mode='nearest' if attention else 'bilinear', variant='shared', kernel_size=5)
    given = dict(recconv or {})
    unknown = sorted(set(given) - set(options))
    if unknown:
        raise BackboneConfigError(f"unknown recconv option(s) {', '.join(unknown)}: "
                                  f"use {', '.join(options)}")
    options.update(given)
    if options['mode'] not in UPSAMPLE_MODES:
        raise BackboneConfigError(f"recconv mode={options['mode']!r} is not one of {', '.join(UPSAMPLE_MODES)}")
    if options['variant'] not in RECCONV_VARIANTS:
        raise BackboneConfigError(
            f"recconv variant={options['variant']!r} is not one of {', '.join(RECCONV_VARIANTS)}")
    if attention and options['variant'] != 'shared':
        raise BackboneConfigError(f"recconv variant={options['variant']!r} applies to the M-series "
                                  "RecConv2d only; the A-series RecAttn2d takes mode and kernel_size")
    if options['variant'] == 'group' and options['mode'] != 'transpose':
        raise BackboneConfigError("recconv variant='group' restores the halved channels with "
                                  "transposed convs: set mode='transpose'")
    kernel_size = options['kernel_size']
    if not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
        raise BackboneConfigError(f'recconv kernel_size={kernel_size!r} must be a positive odd int')
    return options


class ConvNorm(nn.Sequential):
    """Bias-free conv followed by BatchNorm; fuses into one conv."""

    def __init__(self, in_channels, out_channels, kernel_size=1, stride=1, padding=0, groups=1):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding,
                              groups=groups, bias=False)
        self.norm = nn.BatchNorm2d(out_channels)

    def fuse(self) -> nn.Conv2d:
        return fuse_conv_bn(self.conv, self.norm)


def depthwise_conv(channels: int, kernel_size: int, stride: int = 1, norm: bool = False) -> nn.Module:
    """'Same'-padded depthwise conv (output size ceil(input / stride)), optionally + BN."""
    if norm:
        return ConvNorm(channels, channels, kernel_size, stride, kernel_size // 2, groups=channels)
    return DepthwiseConv2d(channels, channels, kernel_size, groups=channels, stride=stride,
                           padding=kernel_size // 2, bias=False)


def conv_mlp(channels: int, hidden: int) -> nn.Sequential:
    """1x1 ConvNorm -> GELU -> 1x1 ConvNorm (indices 0 and 2 are checkpoint keys)."""
    return nn.Sequential(ConvNorm(channels, hidden), nn.GELU(), ConvNorm(hidden, channels))


# ---- upsampling back to a saved size --------------------------------------------------------
class Resize(nn.Module):
    """Parameter-free upsampling by interpolation to an exact size."""

    def __init__(self, mode: str):
        super().__init__()
        self.mode = mode

    def forward(self, x: torch.Tensor, size) -> torch.Tensor:
        align = dict(align_corners=False) if self.mode == 'bilinear' else {}
        return F.interpolate(x, size=size, mode=self.mode, **align)

    def extra_repr(self) -> str:
        return f'mode={self.mode!r}'


class TransposedUpsample(nn.ConvTranspose2d):
    """Stride-2 transposed conv (kernel k+1, padding k//2: exactly 2x the input), then cropped
    or zero-padded at the bottom/right to the saved size, so odd sizes work too."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int):
        super().__init__(in_channels, out_channels, kernel_size + 1, stride=2, padding=kernel_size // 2,
                         groups=in_channels, bias=False)

    def forward(self, x: torch.Tensor, size) -> torch.Tensor:
        x = super().forward(x)
        # F.pad with a negative amount crops.
        return F.pad(x, (0, size[1] - x.shape[-1], 0, size[0] - x.shape[-2]))


def make_upsample(mode: str, in_channels: int, out_channels: int, kernel_size: int) -> nn.Module:
    if mode == 'transpose':
        return TransposedUpsample(in_channels, out_channels, kernel_size)
    return Resize(mode)


# ---- M-series token mixer ----------------------------------------------------------------------
class RecConv2d(nn.Module):
    """Recursive depthwise convolution.

    The input is downsampled ``level`` times by stride-2 depthwise convs. Going back up, each
    level is convolved, merged into the next finer level and upsampled to that level's saved
    size, so any input size (odd ones too) works. The effective receptive field grows with
    each level while the cost stays near one kxk conv. Variants (see :func:`recconv_options`):

    * ``shared``: one ``down`` conv reused at every level; merge by addition (the paper's);
    * ``group``: ``downs[l]`` halves the channels (grouped, 2 inputs per output), the
      transposed-conv ``ups`` double them back; merge by addition;
    * ``split``: each level keeps half the channels and recurses on the other half
      (``downs[l]`` is depthwise on that half); merge by concatenation.

    ``convs`` and ``ups`` are ordered coarsest first; ``convs[-1]`` is the full-resolution conv.
    """

    def __init__(self, channels: int, kernel_size: int = 5, level: int = 1, mode: str = 'bilinear',
                 variant: str = 'shared'):
        super().__init__()
        if level < 1:
            raise ValueError(f'RecConv2d needs level >= 1, got {level}')
        if variant == 'group' and channels % 2 ** level:
            raise BackboneConfigError(
                f"recconv variant='group' halves the channels {level} times: {channels} channels "
                f'are not divisible by {2 ** level}; use variant shared or split')
        if variant == 'split' and channels >> level < 1:
            raise BackboneConfigError(f"recconv variant='split': {channels} channels cannot be halved {level} times")
        if variant == 'group' and mode != 'transpose':
            raise BackboneConfigError("recconv variant='group' needs mode='transpose'")
        self.level = level
        self.variant = variant
        # Channels at each level, finest first (split keeps the floor half, as torch.chunk does).
        widths = [channels if variant == 'shared' else channels >> index for index in range(level + 1)]
        if variant == 'shared':
            self.down = depthwise_conv(channels, kernel_size, stride=2)
        elif variant == 'group':
            self.downs = nn.ModuleList(
                nn.Conv2d(widths[i], widths[i + 1], kernel_size, 2, kernel_size // 2, groups=widths[i + 1],
                          bias=False) for i in range(level))
        else:
            self.downs = nn.ModuleList(depthwise_conv(widths[i + 1], kernel_size, stride=2) for i in range(level))
        self.convs = nn.ModuleList(depthwise_conv(widths[i], kernel_size) for i in reversed(range(level + 1)))
        # split restores the width by concatenation, the others by the upsampling itself.
        up_widths = widths[1:] if variant == 'split' else widths[:-1]
        self.ups = nn.ModuleList(make_upsample(mode, widths[i + 1], up_widths[i], kernel_size)
                                 for i in reversed(range(level)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.variant == 'split':
            return self._forward_split(x)
        downs = [self.down] * self.level if self.variant == 'shared' else self.downs
        sizes, pyramid = [], []
        coarse = x
        for down in downs:
            sizes.append(coarse.shape[-2:])
            coarse = down(coarse)
            pyramid.append(coarse)
        upsampled = None
        for conv, up, feature, size in zip(self.convs, self.ups, reversed(pyramid), reversed(sizes)):
            mixed = feature if upsampled is None else feature + upsampled
            upsampled = up(conv(mixed), size)
        return self.convs[-1](x + upsampled)

    def _forward_split(self, x: torch.Tensor) -> torch.Tensor:
        kept = []
        for down in self.downs:
            # chunk gives the first part the extra channel of an odd count: it is kept.
            keep, x = torch.chunk(x, 2, dim=1)
            kept.append((keep, x.shape[-2:]))
            x = down(x)
        for conv, up, (keep, size) in zip(self.convs, self.ups, reversed(kept)):
            x = torch.cat([keep, up(conv(x), size)], dim=1)
        return self.convs[-1](x)

    def absorb_output_norm(self, norm: nn.BatchNorm2d):
        """Fold a BN applied to this module's output into its last (full-resolution) conv."""
        self.convs[-1] = fuse_conv_bn(self.convs[-1], norm)


# ---- A-series token mixer ----------------------------------------------------------------------
def linear_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Normalised linear attention, ``[b, heads, d, n]`` each -> ``[b, heads, n, d]``.

    out_i = sum_j (q_i . k_j) v_j / n / (q_i . mean(k) + eps): the authors' n x n form
    ``A = q^T k; A / (mean_j A + eps); (A n^-1/2) (v^T n^-1/2)`` regrouped as q^T (k v^T / n),
    which costs O(n d^2) instead of O(n^2 d) (detection-sized maps make n large).
    """
    scale = q.shape[-1] ** -0.5
    q_t = q.transpose(-1, -2)
    kv = (k * scale) @ (v.transpose(-1, -2) * scale)  # [b, heads, d, d]
    return q_t @ kv / (q_t @ k.mean(dim=-1, keepdim=True) + eps)


class LinearAttention(nn.Module):
    """Multi-head linear attention with ELU+1 features; v is the input itself, and a 3x3
    depthwise ConvNorm of it is added as a positional term."""

    def __init__(self, channels: int, num_heads: int):
        super().__init__()
        if channels % num_heads:
            raise BackboneConfigError(f'LinearAttention: {channels} channels do not split into {num_heads} heads')
        self.num_heads = num_heads
        # q and k from one grouped 1x1 conv: the first half of the channels feeds q, the second k.
        self.qk = ConvNorm(channels, channels * 2, groups=2)
        self.pe = depthwise_conv(channels, 3, norm=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k = (F.elu(self.qk(x)) + 1.0).reshape(b, 2, self.num_heads, c // self.num_heads, h * w).unbind(dim=1)
        v = x.reshape(b, self.num_heads, c // self.num_heads, h * w)
        out = linear_attention(q, k, v)
        return out.transpose(-1, -2).reshape(b, c, h, w) + self.pe(x)


class RecAttn2d(nn.Module):
    """One recursive level with attention: conv_kxk(x + up(attention(down(x)))).

    ``down`` (checkpoint keys ``down.0``, ``down.1``) is a stride-2 depthwise ConvNorm then
    :class:`LinearAttention`; the result returns to the input size by ``mode`` (nearest in the
    paper); ``conv`` is a depthwise ConvNorm at full resolution.
    """

    def __init__(self, channels: int, num_heads: int, kernel_size: int = 5, mode: str = 'nearest'):
        super().__init__()
        self.down = nn.Sequential(depthwise_conv(channels, kernel_size, stride=2, norm=True),
                                  LinearAttention(channels, num_heads))
        self.up = make_upsample(mode, channels, channels, kernel_size)
        self.conv = depthwise_conv(channels, kernel_size, norm=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x + self.up(self.down(x), x.shape[-2:]))


# ---- trunk ---------------------------------------------------------------------------------
class RecNeXtBlock(nn.Module):
    """x + MLP(norm(token_mixer(x))). M: a BN after RecConv2d; A: no norm (no key either)."""

    def __init__(self, token_mixer: nn.Module, channels: int, mlp_ratio: float, drop_path: float = 0.0,
                 norm: bool = True):
        super().__init__()
        self.token_mixer = token_mixer
        self.norm = nn.BatchNorm2d(channels) if norm else nn.Identity()
        self.channel_mixer = conv_mlp(channels, int(channels * mlp_ratio))
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x):
        return x + self.drop_path(self.channel_mixer(self.norm(self.token_mixer(x))))

    def fuse(self) -> nn.Module:
        if isinstance(self.norm, nn.BatchNorm2d):
            # The M-series BN after the token mixer folds into its last (full-resolution) conv.
            self.token_mixer.absorb_output_norm(self.norm)
        return FusedRecNeXtBlock(self.token_mixer, self.channel_mixer)


def make_block(spec: RecNeXtArch, channels: int, stage: int, drop_path: float, options: dict) -> RecNeXtBlock:
    if spec.attention:
        # Heads double per stage: 2, 4, 8, 16.
        mixer = RecAttn2d(channels, num_heads=2 ** (stage + 1), kernel_size=options['kernel_size'],
                          mode=options['mode'])
    else:
        # Four stages: the recursion is deepest where maps are largest.
        mixer = RecConv2d(channels, level=4 - stage, **options)
    return RecNeXtBlock(mixer, channels, spec.mlp_ratio, drop_path, norm=not spec.attention)


class Downsample(nn.Module):
    """Stride-2 7x7 conv (groups = in channels, out = 2x in) -> BN, then x + MLP(x)."""

    def __init__(self, in_channels: int, mlp_ratio: float):
        super().__init__()
        out_channels = in_channels * 2
        self.token_mixer = nn.Conv2d(in_channels, out_channels, 7, stride=2, padding=3,
                                     groups=in_channels)
        self.norm = nn.BatchNorm2d(out_channels)
        self.channel_mixer = conv_mlp(out_channels, int(out_channels * mlp_ratio))

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
    """A MetaNeXt stage: downsampling (Identity in stage 0), then blocks (keys .downsample, .blocks.N).

    RecNeXt and RepNeXt share it through :func:`metanext_trunk`; only their blocks and
    downsampling layers differ.
    """

    def __init__(self, downsample: nn.Module, blocks: Sequence[nn.Module]):
        super().__init__()
        self.downsample = downsample
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x):
        return self.blocks(self.downsample(x))


def metanext_trunk(dims: Sequence[int], depths: Sequence[int], drop_paths: Sequence[float], in_chans: int,
                   make_downsample: Callable[[int], nn.Module],
                   make_stage_block: Callable[[int, int, float], nn.Module]
                   ) -> Tuple[Stem, nn.Sequential, List[dict]]:
    """Stem, four stages and their feature_info of a MetaNeXt family.

    ``drop_paths`` has one rate per block; ``make_downsample(in_channels)`` builds the
    stride-2 layer that opens stages 1-3; ``make_stage_block(channels, stage, drop_path)``
    builds one block.
    """
    stages, start = [], 0
    for index, (dim, depth) in enumerate(zip(dims, depths)):
        downsample = make_downsample(dims[index - 1]) if index > 0 else nn.Identity()
        blocks = [make_stage_block(dim, index, rate) for rate in drop_paths[start:start + depth]]
        stages.append(Stage(downsample, blocks))
        start += depth
    return Stem(in_chans, dims[0]), nn.Sequential(*stages), stage_feature_info(dims)


def build_trunk(arch: str, in_chans: int = 3, drop_path_rate: float = 0.0, recconv: Optional[dict] = None
                ) -> Tuple[Stem, nn.Sequential, List[dict]]:
    """Stem, stages and their feature_info (shared by the classifier and the backbone)."""
    spec = RECNEXT_ARCHS[arch]
    options = recconv_options(recconv, spec.attention)
    # The authors give every block the same drop-path rate (no linear rise over depth).
    rates = [drop_path_rate] * sum(spec.depths)
    return metanext_trunk(spec.dims, spec.depths, rates, in_chans,
                          lambda channels: Downsample(channels, spec.mlp_ratio),
                          lambda channels, stage, rate: make_block(spec, channels, stage, rate, options))


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


class RecNeXt(TimmClassifier):
    """RecNeXt ImageNet classifier (timm model), M- or A-series by ``arch``.

    A MetaNeXt family with the same stem and head (RepNeXt) subclasses it and replaces
    ``archs`` and ``build_trunk``; extra keyword arguments (``recconv``) go to ``build_trunk``.
    """

    archs = RECNEXT_ARCHS
    build_trunk = staticmethod(build_trunk)

    def __init__(self, arch: str = 'm0', in_chans: int = 3, num_classes: int = 1000,
                 global_pool: str = 'avg', drop_rate: float = 0.0, drop_path_rate=None,
                 distillation: bool = False, **trunk_kwargs):
        super().__init__()
        if drop_path_rate is None:
            # The ImageNet recipe's default; the authors train the distilled models without.
            drop_path_rate = 0.0 if distillation else self.archs[arch].drop_path_rate
        self.num_classes = num_classes
        self.global_pool = global_pool
        self.stem, self.stages, self.feature_info = self.build_trunk(arch, in_chans, drop_path_rate,
                                                                     **trunk_kwargs)
        self.num_features = self.head_hidden_size = self.feature_info[-1]['num_chs']
        self.head_drop = nn.Dropout(drop_rate)
        self.head = (DistilledHead(self.num_features, num_classes, distillation)
                     if num_classes > 0 else nn.Identity())

    def trunk_steps(self):
        return [self.stem, *self.stages]

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        return dict(stem=r'^stem', blocks=r'^stages\.(\d+)' if coarse else [
            (r'^stages\.(\d+)\.downsample', (0,)), (r'^stages\.(\d+)\.blocks\.(\d+)', None)])

    def level_ends(self):
        return range(1, len(self.stages) + 1)

    def keep_steps(self, count: int):
        self.stages = self.stages[:count - 1]

    def make_head(self, num_classes: int) -> nn.Module:
        return DistilledHead(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward_head(self, x, pre_logits: bool = False):
        if self.global_pool == 'avg':
            x = x.mean((2, 3))
        x = self.head_drop(x)
        return x if pre_logits else self.head(x)

    def switch_to_deploy(self) -> nn.Module:
        """Deploy form, in place: BN folded into convs, the two heads merged into one Linear."""
        return super().switch_to_deploy()


# ---- Deploy fast path -------------------------------------------------------------------
# What fuse() returns. Same function as the training form (BN folded), but on CPU fp32
# inference: activations in channels-last (no layout copies around the depthwise convs
# and the bilinear resizes), and oneDNN kernels that apply GELU and the residual add
# inside the 1x1 convs instead of two extra passes over memory. Elsewhere (CUDA, fp16,
# autograd) the same modules run plain PyTorch ops.

# Read once: torch.compile cannot trace ``torch.backends.mkldnn.is_available``.
_MKLDNN = torch.backends.mkldnn.is_available()


def _onednn_fusion(x: torch.Tensor) -> bool:
    """True where oneDNN's fused conv kernels apply: CPU fp32 without autograd, in eager
    mode. Under torch.compile, torch.export, ONNX export and jit tracing the standard ops
    run instead (the same function): compilers fuse on their own, and exporters have no
    symbolic for these kernels."""
    if is_tracing() or torch.jit.is_scripting():
        return False
    return (_MKLDNN and x.device.type == 'cpu' and x.dtype == torch.float32
            and not torch.is_grad_enabled())


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
    """RecNeXt trunk for dense prediction: stage features at strides 4/8/16/32.

    Registered in mmdet's and mmseg's MODELS as ``type='RecNeXt', arch='m3'`` (or ``'a3'``);
    ``recconv=dict(mode=..., variant=..., kernel_size=...)`` picks a RecConv variant (see
    :func:`recconv_options`). See :class:`MultiScaleBackbone` for out_indices,
    frozen_stages, norm_eval, deploy and init_cfg.
    """

    archs = RECNEXT_ARCHS

    def __init__(self, arch: str, recconv: Optional[dict] = None, **kwargs):
        # Read by build(), which the base __init__ calls.
        self.recconv = recconv
        super().__init__(arch, **kwargs)

    def build(self, arch: str, drop_path_rate: float, in_channels: int):
        self.stem, stages, info = build_trunk(arch, in_channels, drop_path_rate, self.recconv)
        self.stages = nn.ModuleList(stages)
        return info


# ---- the family -------------------------------------------------------------------------
# The token mixer's stride-2 conv (M: a bare conv, A: a ConvNorm) only exists in RecNeXt checkpoints.
KEY_SIGNATURE = r'token_mixer\.down\.(0\.conv\.)?weight$'
# suous's release files: the distilled classifier is timm's default tag.
SUOUS_CLASSIFIERS = {'dist_in1k': '{model}_distill_300e.pth', 'in1k': '{model}_without_distill_300e.pth'}
SUOUS_DOWNSTREAM = {'coco': '{model}_coco.pth', 'ade20k': '{model}_ade20k.pth'}


def suous_release(base: str, series: str, downstream: Sequence[int], classifiers=SUOUS_CLASSIFIERS) -> Release:
    """suous's release of one series (``recnext_m``, ``recnext_a``, ``repnext_m``): classifiers of
    sizes 0-5, trained detectors and segmentors of the ``downstream`` sizes."""
    return Release(base, tuple(f'{series}{index}' for index in range(6)), classifiers,
                   tuple(f'{series}{index}' for index in downstream), SUOUS_DOWNSTREAM)


FAMILY = register(Family(
    type='RecNeXt', backbone=RecNeXtBackbone, classifiers=(RecNeXt,), archs=RECNEXT_ARCHS,
    models={f'recnext_{arch}': Model(arch) for arch in RECNEXT_ARCHS}, key_signature=KEY_SIGNATURE,
    releases=(suous_release('https://github.com/suous/RecNeXt/releases/download/v1.0/', 'recnext_m', (3, 4, 5)),
              suous_release('https://github.com/suous/RecNeXt/releases/download/v2.0/', 'recnext_a', (3, 4, 5)))))

# The authors' ImageNet evaluation: resize the short side to 256 (bicubic), centre-crop 224.
EVAL_PREPROCESSING = dict(input_size=(3, 224, 224), crop_pct=224 / 256, interpolation='bicubic',
                          mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD)


def _cfg(**kwargs) -> dict:
    return dict(num_classes=1000, pool_size=(7, 7), first_conv='stem.stem.0.conv',
                classifier=('head.head.linear', 'head.head_dist.linear'), **EVAL_PREPROCESSING, **kwargs)


# timm reads this module's default_cfgs when the factories below register: the releases
# above as tags, recnext_m3.dist_in1k (the default) and recnext_m3.in1k.
default_cfgs = generate_default_cfgs(FAMILY.pretrained_cfgs(_cfg))

# Features at the four stages; flatten_sequential hoists `stages` so that each is a level.
METANEXT_FEATURE_CFG = dict(flatten_sequential=True, out_indices=(0, 1, 2, 3))


def _create_recnext(name: str, pretrained: bool = False, **kwargs) -> RecNeXt:
    return create_timm_model(FAMILY, name, pretrained, RecNeXt, dict(arch=FAMILY.models[name].arch),
                             METANEXT_FEATURE_CFG, **kwargs)


@register_model
def recnext_m0(pretrained: bool = False, **kwargs) -> RecNeXt:
    """RecNeXt-M0, with RecConv token mixers."""
    return _create_recnext('recnext_m0', pretrained, **kwargs)


@register_model
def recnext_m1(pretrained: bool = False, **kwargs) -> RecNeXt:
    """RecNeXt-M1, with RecConv token mixers."""
    return _create_recnext('recnext_m1', pretrained, **kwargs)


@register_model
def recnext_m2(pretrained: bool = False, **kwargs) -> RecNeXt:
    """RecNeXt-M2, with RecConv token mixers."""
    return _create_recnext('recnext_m2', pretrained, **kwargs)


@register_model
def recnext_m3(pretrained: bool = False, **kwargs) -> RecNeXt:
    """RecNeXt-M3, with RecConv token mixers."""
    return _create_recnext('recnext_m3', pretrained, **kwargs)


@register_model
def recnext_m4(pretrained: bool = False, **kwargs) -> RecNeXt:
    """RecNeXt-M4, with RecConv token mixers."""
    return _create_recnext('recnext_m4', pretrained, **kwargs)


@register_model
def recnext_m5(pretrained: bool = False, **kwargs) -> RecNeXt:
    """RecNeXt-M5, with RecConv token mixers."""
    return _create_recnext('recnext_m5', pretrained, **kwargs)


@register_model
def recnext_a0(pretrained: bool = False, **kwargs) -> RecNeXt:
    """RecNeXt-A0, with RecAttn token mixers."""
    return _create_recnext('recnext_a0', pretrained, **kwargs)


@register_model
def recnext_a1(pretrained: bool = False, **kwargs) -> RecNeXt:
    """RecNeXt-A1, with RecAttn token mixers."""
    return _create_recnext('recnext_a1', pretrained, **kwargs)


@register_model
def recnext_a2(pretrained: bool = False, **kwargs) -> RecNeXt:
    """RecNeXt-A2, with RecAttn token mixers."""
    return _create_recnext('recnext_a2', pretrained, **kwargs)


@register_model
def recnext_a3(pretrained: bool = False, **kwargs) -> RecNeXt:
    """RecNeXt-A3, with RecAttn token mixers."""
    return _create_recnext('recnext_a3', pretrained, **kwargs)


@register_model
def recnext_a4(pretrained: bool = False, **kwargs) -> RecNeXt:
    """RecNeXt-A4, with RecAttn token mixers."""
    return _create_recnext('recnext_a4', pretrained, **kwargs)


@register_model
def recnext_a5(pretrained: bool = False, **kwargs) -> RecNeXt:
    """RecNeXt-A5, with RecAttn token mixers."""
    return _create_recnext('recnext_a5', pretrained, **kwargs)
