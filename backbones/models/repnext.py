"""RepNeXt-M: multi-scale depthwise convs, trained multi-branch, deployed as single convs.

Reference: Zhao et al., "RepNeXt: A Fast Multi-Scale CNN using Structural
Reparameterization" (https://github.com/suous/RepNeXt). Parameter names follow the
authors' checkpoints exactly, so their ``{'model': state_dict}`` files load strictly.

The trunk is RecNeXt-M's MetaNeXt layout (same stem, MLPs, head, dims and depths) with
two other token mixers:

* :class:`ChunkConv` (blocks): the channels in four chunks: identity, a small branch
  (3x3 + 1x3 + 3x1 + 2x2 dilated by 2), a medium branch (7x7 + 5x3 + 3x5 + 1x7->7x1 +
  1x5->5x1) and a large 1x11->11x1 pair;
* :class:`CopyConv` (downsampling): the stride-2 small and medium branches side by side
  on the same input, which doubles the channels.

Deploy forms, each equal to the training form in eval mode:

1. ``fuse()``: every branch summed into one conv, every BN folded, the heads merged;
2. ``fuse(single_kernel=True)``: also each ChunkConv as one 11x11 depthwise conv
   (:class:`SingleKernelChunkConv`, the paper's single-branch equivalent form);
3. ``RepNeXtBackbone(..., deploy=True)`` builds form 1 (or 2 with ``single_kernel=True``)
   directly, for the deploy-form weights that ``reparameterize`` writes from a trained
   detector or segmentor (the weights part's ``reparameterize``; the family declares
   ``deploy_state=True``).
"""
import re
from typing import Iterable, List, NamedTuple, Optional, Tuple

import torch
import torch.nn.functional as F
from timm.layers import DropPath
from timm.models import generate_default_cfgs, register_model
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..errors import CheckpointError
from .layers.fusion import (bn_scale_shift, compose_row_column, depthwise_conv, dilate_kernel,
                            fuse_bn_pointwise_conv, fuse_modules, pad_kernel, scale_conv_output)
from .multiscale import MultiScaleBackbone, logger
from .recnext import (METANEXT_FEATURE_CFG, ConvNorm, RecNeXt, Stem, _cfg, conv_mlp, metanext_trunk,
                      suous_release)
from .registry import Family, Model, register
from .timm_models import create_timm_model

__all__ = ['RepNeXt', 'RepNeXtBackbone', 'ChunkConv', 'CopyConv', 'SingleKernelChunkConv',
           'REPNEXT_ARCHS', 'collapse_chunk_convs', 'checkpoint_form']

MLP_RATIO = 2  # hidden width of every MLP, as in RecNeXt-M


class RepNeXtArch(NamedTuple):
    dims: Tuple[int, ...]
    depths: Tuple[int, ...]
    drop_path_rate: float  # default; the authors' model has no stochastic depth, so every one is 0


REPNEXT_ARCHS = {
    'm0': RepNeXtArch((40, 80, 160, 320), (2, 2, 9, 1), 0.0),
    'm1': RepNeXtArch((48, 96, 192, 384), (3, 3, 15, 2), 0.0),
    'm2': RepNeXtArch((56, 112, 224, 448), (3, 3, 15, 2), 0.0),
    'm3': RepNeXtArch((64, 128, 256, 512), (3, 3, 13, 2), 0.0),
    'm4': RepNeXtArch((64, 128, 256, 512), (5, 5, 25, 4), 0.0),
    'm5': RepNeXtArch((80, 160, 320, 640), (7, 7, 35, 2), 0.0),
}
LARGE_KERNEL = 11
# The three forms' checkpoints, told apart by their keys (checked in this order): the
# multi-branch small branch; level 2's single-kernel ChunkConv; level 1's fused small branch.
FORM_KEYS = (('training', r'token_mixer\.conv_s\.conv_3_3\.weight$'),
             ('single_kernel', r'token_mixer\.edge_bias$'),
             ('deploy', r'token_mixer\.conv_s\.weight$'))
FORM_NAMES = {'training': 'training-form', 'deploy': 'deploy-form',
              'single_kernel': 'single-kernel deploy-form (level 2)'}
FORM_OPTIONS = {'training': 'deploy=False', 'deploy': 'deploy=True',
                'single_kernel': 'deploy=True, single_kernel=True'}


def _depthwise(channels: int, kernel_size, stride=1, padding=0, dilation=1, bias=True) -> nn.Conv2d:
    return nn.Conv2d(channels, channels, kernel_size, stride=stride, padding=padding,
                     dilation=dilation, groups=channels, bias=bias)


class SmallRepConv(nn.Module):
    """3x3 + 1x3 + 3x1 + 2x2 dilated by 2 (all depthwise); ``fuse()`` gives one 3x3.

    At stride 1 (ChunkConv) the four run in parallel, each with a bias. At stride 2
    (CopyConv) the 1x3 and 3x1 run in series, bias-free, as a separable 3x3. The 2x2
    kernel dilated by 2 with padding 1 covers the corners of the same 3x3 window.
    """

    def __init__(self, channels: int, stride: int = 1):
        super().__init__()
        self.stride = stride
        parallel = stride == 1
        self.conv_3_3 = _depthwise(channels, 3, stride, padding=1)
        self.conv_3_w = _depthwise(channels, (1, 3), (1, stride), padding=(0, 1), bias=parallel)
        self.conv_3_h = _depthwise(channels, (3, 1), (stride, 1), padding=(1, 0), bias=parallel)
        self.conv_2_2 = _depthwise(channels, 2, stride, padding=1, dilation=2)

    def forward(self, x):
        if self.stride == 1:
            return self.conv_3_3(x) + self.conv_3_h(x) + self.conv_3_w(x) + self.conv_2_2(x)
        return self.conv_3_3(x) + self.conv_3_h(self.conv_3_w(x)) + self.conv_2_2(x)

    @torch.no_grad()
    def fuse(self) -> nn.Conv2d:
        weight = self.conv_3_3.weight + dilate_kernel(self.conv_2_2.weight, 2)
        bias = self.conv_3_3.bias + self.conv_2_2.bias
        if self.stride == 1:
            weight = weight + pad_kernel(self.conv_3_w.weight, 3) + pad_kernel(self.conv_3_h.weight, 3)
            bias = bias + self.conv_3_w.bias + self.conv_3_h.bias
        else:
            weight = weight + compose_row_column(self.conv_3_w.weight, self.conv_3_h.weight)
        return depthwise_conv(weight, bias, self.stride)


class MediumRepConv(nn.Module):
    """7x7 + 5x3 + 3x5 + (1x7 then 7x1) + (1x5 then 5x1), depthwise; ``fuse()`` gives one 7x7.

    The full and rectangular kernels carry the biases; the separable pairs are bias-free,
    which is what lets each pair collapse exactly into one square kernel.
    """

    def __init__(self, channels: int, stride: int = 1):
        super().__init__()
        self.conv_7_7 = _depthwise(channels, 7, stride, padding=3)
        self.conv_5_3 = _depthwise(channels, (5, 3), stride, padding=(2, 1))
        self.conv_3_5 = _depthwise(channels, (3, 5), stride, padding=(1, 2))
        self.conv_7_w = _depthwise(channels, (1, 7), (1, stride), padding=(0, 3), bias=False)
        self.conv_7_h = _depthwise(channels, (7, 1), (stride, 1), padding=(3, 0), bias=False)
        self.conv_5_w = _depthwise(channels, (1, 5), (1, stride), padding=(0, 2), bias=False)
        self.conv_5_h = _depthwise(channels, (5, 1), (stride, 1), padding=(2, 0), bias=False)
        self.stride = stride

    def forward(self, x):
        return (self.conv_7_7(x) + self.conv_5_3(x) + self.conv_3_5(x)
                + self.conv_7_h(self.conv_7_w(x)) + self.conv_5_h(self.conv_5_w(x)))

    @torch.no_grad()
    def fuse(self) -> nn.Conv2d:
        weight = (self.conv_7_7.weight + pad_kernel(self.conv_5_3.weight, 7)
                  + pad_kernel(self.conv_3_5.weight, 7)
                  + compose_row_column(self.conv_7_w.weight, self.conv_7_h.weight)
                  + pad_kernel(compose_row_column(self.conv_5_w.weight, self.conv_5_h.weight), 7))
        bias = self.conv_7_7.bias + self.conv_5_3.bias + self.conv_3_5.bias
        return depthwise_conv(weight, bias, self.stride)


def _as_conv(branch: nn.Module) -> nn.Conv2d:
    """A branch in its single-conv form (it may already be one)."""
    return branch.fuse() if isinstance(branch, (SmallRepConv, MediumRepConv)) else branch


class ChunkConv(nn.Module):
    """Four equal channel chunks: identity, small, medium, large (1x11 then 11x1) kernels.

    After ``fuse_modules`` the small and medium branches are plain convs and this module
    stays as it is; :meth:`single_kernel` turns it into one 11x11 depthwise conv.
    """

    def __init__(self, channels: int):
        super().__init__()
        if channels % 4:
            raise ValueError(f'ChunkConv splits channels in 4; {channels} is not a multiple of 4')
        quarter = channels // 4
        self.conv_s = SmallRepConv(quarter)
        self.conv_m = MediumRepConv(quarter)
        # Both have biases: the first one's is why the single-kernel form needs an edge term.
        half = LARGE_KERNEL // 2
        self.conv_l = nn.Sequential(_depthwise(quarter, (1, LARGE_KERNEL), padding=(0, half)),
                                    _depthwise(quarter, (LARGE_KERNEL, 1), padding=(half, 0)))

    def forward(self, x):
        identity, small, medium, large = torch.chunk(x, 4, dim=1)
        return torch.cat((identity, self.conv_s(small), self.conv_m(medium), self.conv_l(large)), dim=1)

    @torch.no_grad()
    def single_kernel(self) -> 'SingleKernelChunkConv':
        small, medium = _as_conv(self.conv_s), _as_conv(self.conv_m)
        row, column = self.conv_l
        quarter = row.in_channels
        weight = small.weight
        identity = weight.new_zeros(quarter, 1, LARGE_KERNEL, LARGE_KERNEL)
        identity[:, :, LARGE_KERNEL // 2, LARGE_KERNEL // 2] = 1
        no_bias = weight.new_zeros(quarter)
        row_bias = row.bias if row.bias is not None else no_bias
        column_bias = column.bias if column.bias is not None else no_bias
        merged = SingleKernelChunkConv(4 * quarter).to(weight)
        merged.conv.weight.copy_(torch.cat((
            identity, pad_kernel(small.weight, LARGE_KERNEL), pad_kernel(medium.weight, LARGE_KERNEL),
            compose_row_column(row.weight, column.weight))))
        merged.conv.bias.copy_(torch.cat((no_bias, small.bias, medium.bias, column_bias)))
        edge = torch.zeros_like(merged.edge_bias)
        edge[3 * quarter:] = row_bias.view(-1, 1, 1, 1) * column.weight
        merged.edge_bias.copy_(edge)
        return merged


class SingleKernelChunkConv(nn.Module):
    """ChunkConv as one 11x11 depthwise conv: the paper's single-branch equivalent form.

    One correction keeps it exact: the large branch adds its first (row) conv's bias
    before its column conv, whose zero padding then lets only part of that bias through
    in the top and bottom 5 rows. ``edge_bias`` holds row bias x column kernel per
    channel (zero outside the large chunk); convolving a column of ones with it gives
    that bias row by row, at the cost of one (C, H, 1) conv.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.conv = _depthwise(channels, LARGE_KERNEL, padding=LARGE_KERNEL // 2)
        self.edge_bias = nn.Parameter(torch.zeros(channels, 1, LARGE_KERNEL, 1))

    def forward(self, x):
        channels, height = x.shape[1], x.shape[2]
        ones = x.new_ones(1, channels, height, 1)
        edge = F.conv2d(ones, self.edge_bias, padding=(LARGE_KERNEL // 2, 0), groups=channels)
        return self.conv(x) + edge


@torch.no_grad()
def collapse_chunk_convs(module: nn.Module) -> nn.Module:
    """Deploy level 2: replace every ChunkConv in ``module`` by its single 11x11 form."""
    for name, child in list(module.named_children()):
        if isinstance(child, ChunkConv):
            setattr(module, name, child.single_kernel())
        else:
            collapse_chunk_convs(child)
    return module


class CopyConv(nn.Module):
    """The stride-2 small and medium branches on the same input, concatenated: 2x channels."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv_s = SmallRepConv(channels, stride=2)
        self.conv_m = MediumRepConv(channels, stride=2)

    def forward(self, x):
        return torch.cat((self.conv_s(x), self.conv_m(x)), dim=1)

    @torch.no_grad()
    def fold_norm(self, norm: nn.BatchNorm2d) -> None:
        """Fold the BN over the concatenated output into the two branch convs."""
        scale, shift = bn_scale_shift(norm)
        half = scale.numel() // 2
        self.conv_s = scale_conv_output(_as_conv(self.conv_s), scale[:half], shift[:half])
        self.conv_m = scale_conv_output(_as_conv(self.conv_m), scale[half:], shift[half:])


class RepNeXtBlock(nn.Module):
    """x + MLP(BN(ChunkConv(x))): token mixing, then channel mixing."""

    def __init__(self, channels: int, drop_path: float = 0.0):
        super().__init__()
        self.token_mixer = ChunkConv(channels)
        self.norm = nn.BatchNorm2d(channels)
        self.channel_mixer = conv_mlp(channels, channels * MLP_RATIO)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x):
        return x + self.drop_path(self.channel_mixer(self.norm(self.token_mixer(x))))

    @torch.no_grad()
    def fuse(self) -> nn.Module:
        # The BN sits between the token mixer and a 1x1 conv, so it folds forward into that
        # conv (exact: no padding). Folding it backward would leave an affine on the
        # identity chunk.
        if isinstance(self.norm, _BatchNorm):
            first = self.channel_mixer[0]
            if isinstance(first, ConvNorm):
                first.conv = fuse_bn_pointwise_conv(self.norm, first.conv)
            else:
                self.channel_mixer[0] = fuse_bn_pointwise_conv(self.norm, first)
            self.norm = nn.Identity()
        return self


class Downsample(nn.Module):
    """CopyConv -> BN (stride 2, 2x channels), then x + MLP(x)."""

    def __init__(self, in_channels: int):
        super().__init__()
        out_channels = in_channels * 2
        self.token_mixer = CopyConv(in_channels)
        self.norm = nn.BatchNorm2d(out_channels)
        self.channel_mixer = conv_mlp(out_channels, out_channels * MLP_RATIO)

    def forward(self, x):
        x = self.norm(self.token_mixer(x))
        return x + self.channel_mixer(x)

    def fuse(self) -> nn.Module:
        # The residual reads the BN's output, so this BN folds backward into CopyConv.
        if isinstance(self.norm, _BatchNorm):
            self.token_mixer.fold_norm(self.norm)
            self.norm = nn.Identity()
        return self


def build_trunk(arch: str, in_chans: int = 3, drop_path_rate: float = 0.0
                ) -> Tuple[Stem, nn.Sequential, List[dict]]:
    """Stem, stages and their feature_info (shared by the classifier and the backbone)."""
    spec = REPNEXT_ARCHS[arch]
    # On the CPU even under a meta default device (shape-only builds), since .tolist() reads it.
    rates = torch.linspace(0, drop_path_rate, sum(spec.depths), device='cpu').tolist()
    return metanext_trunk(spec.dims, spec.depths, rates, in_chans, Downsample,
                          lambda channels, stage, rate: RepNeXtBlock(channels, rate))


class RepNeXt(RecNeXt):
    """RepNeXt-M ImageNet classifier (timm model); stem, head and API as RecNeXt's."""

    archs = REPNEXT_ARCHS
    build_trunk = staticmethod(build_trunk)

    def switch_to_deploy(self, single_kernel: bool = False) -> nn.Module:
        """Deploy form, in place: level 1, or level 2 with ``single_kernel`` (see the module doc)."""
        fuse_modules(self)
        return collapse_chunk_convs(self) if single_kernel else self


def checkpoint_form(keys: Iterable[str]) -> Optional[str]:
    """'training', 'deploy' (level 1) or 'single_kernel' (level 2): the form of the RepNeXt
    weights whose keys are ``keys``; None for keys of no RepNeXt form."""
    keys = list(keys)
    return next((form for form, pattern in FORM_KEYS if any(re.search(pattern, k) for k in keys)), None)


class RepNeXtBackbone(MultiScaleBackbone):
    """RepNeXt-M trunk for dense prediction: stage features at strides 4/8/16/32.

    Registered in mmdet's and mmseg's MODELS as ``type='RepNeXt', arch='m3'``; see
    :class:`MultiScaleBackbone` for out_indices, frozen_stages, norm_eval and init_cfg.
    ``deploy=True`` builds the reparameterised form directly (its state_dict is what
    ``reparameterize`` writes); ``single_kernel=True`` makes that form level 2.
    A deploy backbone also takes training-form weights, however they arrive (``init_cfg``,
    or a detector's ``load_state_dict`` as mmengine's ``Runner.load_checkpoint`` does it):
    it takes the training form for the load and folds it again right after.
    """

    archs = REPNEXT_ARCHS

    def __init__(self, arch: str, *args, single_kernel: bool = False, **kwargs):
        self.single_kernel = single_kernel  # read by build(), which runs inside super().__init__
        super().__init__(arch, *args, **kwargs)
        self.register_load_state_dict_pre_hook(RepNeXtBackbone._take_checkpoint_form)
        self.register_load_state_dict_post_hook(RepNeXtBackbone._fold_after_load)

    def build(self, arch: str, drop_path_rate: float, in_channels: int):
        self.stem, stages, info = build_trunk(arch, in_channels, drop_path_rate)
        self.stages = nn.ModuleList(stages)
        if self.deploy:
            # The collapsed structure does not depend on the values, so collapsing the
            # fresh training form gives it; the real weights are loaded afterwards.
            self.switch_to_deploy()
        return info

    def switch_to_deploy(self) -> 'RepNeXtBackbone':
        super().switch_to_deploy()
        if self.single_kernel:
            collapse_chunk_convs(self)
        return self

    # ---- checkpoint forms ----------------------------------------------------------
    @property
    def form(self) -> str:
        if not self.fused:
            return 'training'
        return 'single_kernel' if self.single_kernel else 'deploy'

    def match_checkpoint_form(self, state_dict) -> None:
        """A deploy backbone given training-form weights takes the training form's structure
        (fresh values, on its own device and dtype) for the load; the load hook folds it."""
        if self.fused and checkpoint_form(state_dict) == 'training':
            reference = next(self.parameters())
            self.stem, stages, _ = build_trunk(self.arch, self.in_channels)
            self.stages = nn.ModuleList(stages)
            self.stem.to(device=reference.device, dtype=reference.dtype)
            self.stages.to(device=reference.device, dtype=reference.dtype)
            self.fused = False
            self.train(self.training)  # frozen stages and norm_eval, as for the old modules
            logger.info(f'{self.family}-{self.arch}: loading training-form weights into the deploy form')

    def explain_misfit(self, state_dict) -> Optional[str]:
        form = checkpoint_form(state_dict)
        if form is None or form == self.form or (form == 'training' and self.deploy):
            return None
        fix = 'single_kernel=False' if form == 'deploy' and self.deploy else FORM_OPTIONS[form]
        return f'this file is a {FORM_NAMES[form]} RepNeXt: set {fix}'

    def _take_checkpoint_form(self, state_dict, prefix, *_):
        # load_state_dict pre-hook: sees the whole (e.g. detector) state_dict before any
        # child loads its part, so the training form is in place when they do.
        keys = [k[len(prefix):] for k in state_dict if k.startswith(prefix)]
        self.match_checkpoint_form(keys)
        cause = self.explain_misfit(keys)
        if cause:
            raise CheckpointError(f"the {prefix or 'checkpoint'}* weights do not fit "
                                  f'{self.family}-{self.arch} ({FORM_NAMES[self.form]}): {cause}')

    def _fold_after_load(self, incompatible_keys):
        if self.deploy and not self.fused:
            self.switch_to_deploy()
            self.train(self.training)  # the folded modules are new: freeze them as configured


# ---- the family -------------------------------------------------------------------------
# The small branch (its 3x3, or the conv it fuses into) exists only in RepNeXt checkpoints.
KEY_SIGNATURE = r'token_mixer\.conv_s\.(conv_3_3\.)?weight$'

# RepNeXt published only its distilled classifiers as direct downloads.
FAMILY = register(Family(
    type='RepNeXt', backbone=RepNeXtBackbone, classifiers=(RepNeXt,), archs=REPNEXT_ARCHS,
    models={f'repnext_{arch}': Model(arch) for arch in REPNEXT_ARCHS}, key_signature=KEY_SIGNATURE,
    releases=(suous_release('https://github.com/suous/RepNeXt/releases/download/v1.0/', 'repnext_m', (3, 4, 5),
                            classifiers={'dist_in1k': '{model}_distill_300e.pth'}),),
    deploy_state=True))

# timm reads this module's default_cfgs when the factories below register: repnext_m3.dist_in1k.
default_cfgs = generate_default_cfgs(FAMILY.pretrained_cfgs(_cfg))


def _create_repnext(name: str, pretrained: bool = False, **kwargs) -> RepNeXt:
    return create_timm_model(FAMILY, name, pretrained, RepNeXt, dict(arch=FAMILY.models[name].arch),
                             METANEXT_FEATURE_CFG, **kwargs)


@register_model
def repnext_m0(pretrained: bool = False, **kwargs) -> RepNeXt:
    """RepNeXt-M0."""
    return _create_repnext('repnext_m0', pretrained, **kwargs)


@register_model
def repnext_m1(pretrained: bool = False, **kwargs) -> RepNeXt:
    """RepNeXt-M1."""
    return _create_repnext('repnext_m1', pretrained, **kwargs)


@register_model
def repnext_m2(pretrained: bool = False, **kwargs) -> RepNeXt:
    """RepNeXt-M2."""
    return _create_repnext('repnext_m2', pretrained, **kwargs)


@register_model
def repnext_m3(pretrained: bool = False, **kwargs) -> RepNeXt:
    """RepNeXt-M3."""
    return _create_repnext('repnext_m3', pretrained, **kwargs)


@register_model
def repnext_m4(pretrained: bool = False, **kwargs) -> RepNeXt:
    """RepNeXt-M4."""
    return _create_repnext('repnext_m4', pretrained, **kwargs)


@register_model
def repnext_m5(pretrained: bool = False, **kwargs) -> RepNeXt:
    """RepNeXt-M5."""
    return _create_repnext('repnext_m5', pretrained, **kwargs)
