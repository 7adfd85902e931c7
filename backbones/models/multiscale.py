"""The dense-prediction wrapper shared by every family (pure PyTorch, no mm imports).

A family subclasses :class:`MultiScaleBackbone`, names its archs and builds its trunk;
this class adds what detection and segmentation need: ``out_indices``,
``frozen_stages``, ``norm_eval``, ``deploy`` and ``init_cfg=dict(type='Pretrained')``
loading of raw classifier checkpoints. mmengine calls ``init_weights()`` on any child
module that has one, so no mm base class is needed here.

The default trunk is ``self.stem`` followed by ``self.stages``. A family whose
checkpoints name their parts otherwise (ConvNeXt's ``downsample_layers`` + ``stages``, a
wrapped timm feature extractor) keeps those names and overrides the three trunk hooks:
:meth:`forward_stages`, :meth:`stem_modules` and :meth:`stage_modules`.

Checkpoints are read by the package's weights part (the checkpoint pipeline), which
registers its loader here (:func:`register_weights_loader`): the models import nothing from it.
"""
import logging
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..errors import UserError
from .layers.fusion import fuse_modules

logger = logging.getLogger('backbones')

# (backbone, checkpoint, prefix) -> what was loaded: the weights part registers the pipeline here.
_WEIGHTS_LOADER: Optional[Callable[..., dict]] = None


def register_weights_loader(load: Callable[..., dict]) -> None:
    """Make ``load(backbone, checkpoint, prefix)`` what :meth:`MultiScaleBackbone.load_pretrained` runs."""
    global _WEIGHTS_LOADER
    _WEIGHTS_LOADER = load


class BackboneConfigError(UserError, ValueError):
    """A user-facing problem with backbone arguments; its message is one line."""


class MultiScaleBackbone(nn.Module):
    """Stem + stages returning a tuple of stage features.

    Args:
        arch: a key of the family's ``archs`` table, e.g. ``'m3'``.
        out_indices: which stages to return (0 = stride 4 ... 3 = stride 32).
        frozen_stages: -1 freezes nothing; k >= 0 freezes the stem and the first k
            stages (parameters get no gradient and their BN layers stay in eval mode).
        norm_eval: keep every BatchNorm (SyncBN included) in eval mode while training,
            i.e. use the pretrained statistics.
        drop_path_rate: stochastic depth, scheduled as the family's authors do: the same
            rate in every RecNeXt block, rising linearly to it over the blocks elsewhere.
        deploy: inference form; BN is folded into the convs before the first forward
            (after the weights are loaded). Training a deploy model is refused.
        init_cfg: ``dict(type='Pretrained', checkpoint=PATH_OR_URL[, prefix='backbone'])``.
            A raw classifier release works (the weights are taken from ``state_dict``,
            ``model`` or ``model_ema``, the classifier head is dropped, the authors' key
            spellings are mapped, larger kernels cropped where the family uses smaller
            ones), and so does a detector file (its ``backbone.`` keys; ``prefix`` is
            written with or without the dot, as mmengine's). A file that does not fill
            the backbone is refused in one line (:mod:`backbones.weights`).
    """

    family = 'Backbone'
    archs: Dict[str, tuple] = {}
    # Top-level state_dict prefixes that belong to the classifier only.
    classifier_prefixes: Tuple[str, ...] = ('head', 'head_dist')
    # The checkpoint pipeline's rules (backbones.weights.FamilyRules). True where the backbone
    # uses smaller kernels than the classifier, so larger odd kernels are centre-cropped.
    crop_classifier_kernels: bool = False
    # Top-level prefixes of modules only the backbone has (e.g. ConvNeXt's output norms):
    # a classifier checkpoint lacks them, so they keep their initial values.
    backbone_only_prefixes: Tuple[str, ...] = ()

    @staticmethod
    def remap_classifier_keys(state_dict):
        """The authors' checkpoint key layouts -> this backbone's layout (identity here)."""
        return state_dict

    def __init__(self, arch: str, out_indices: Sequence[int] = (0, 1, 2, 3),
                 frozen_stages: int = -1, norm_eval: bool = False, drop_path_rate: float = 0.0,
                 deploy: bool = False, init_cfg: Optional[dict] = None, in_channels: int = 3):
        super().__init__()
        if arch not in self.archs:
            raise BackboneConfigError(
                f"unknown {self.family} arch '{arch}': choose one of {', '.join(self.archs)}")
        self.arch = arch
        self.in_channels = in_channels
        # Set before build(), which may construct the fused form directly (and say so).
        self.deploy = deploy
        self.fused = False
        info = self.build(arch, drop_path_rate=drop_path_rate, in_channels=in_channels)
        num_stages = len(info)
        out_indices = tuple(int(i) for i in out_indices)
        bad = [i for i in out_indices if not -num_stages <= i < num_stages]
        if bad or not out_indices:
            raise BackboneConfigError(
                f'out_indices {out_indices} invalid for {self.family}-{arch}: use stage indices 0..{num_stages - 1}')
        self.out_indices = tuple(sorted(i % num_stages for i in out_indices))
        if not -1 <= frozen_stages <= num_stages:
            raise BackboneConfigError(f'frozen_stages={frozen_stages} invalid: use -1 (none) to {num_stages}')
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.init_cfg = init_cfg
        self.feature_info = [dict(num_chs=info[i]['num_chs'], reduction=info[i]['reduction'],
                                  module=info[i].get('module', f'stages.{i}')) for i in self.out_indices]
        self._freeze()

    def build(self, arch: str, drop_path_rate: float, in_channels: int) -> List[dict]:
        """Create the trunk's modules as attributes, named as in the family's checkpoints,
        and return one feature-info dict (``num_chs``, ``reduction``) per stage.

        The default hooks below expect ``self.stem`` and ``self.stages`` (indexable).
        """
        raise NotImplementedError

    # ---- trunk hooks (override where the trunk is not stem + stages) ---------------
    def forward_stages(self, x: torch.Tensor, last: int) -> Iterator[torch.Tensor]:
        """Yield the output features of stages 0..last, in order."""
        x = self.stem(x)
        for stage in self.stages[:last + 1]:
            x = stage(x)
            yield x

    def stem_modules(self) -> List[nn.Module]:
        """What ``frozen_stages=0`` freezes."""
        return [self.stem]

    def stage_modules(self, index: int) -> List[nn.Module]:
        """The modules of stage ``index`` (downsampling included), for freezing."""
        return [self.stages[index]]

    @property
    def out_channels(self) -> List[int]:
        return [info['num_chs'] for info in self.feature_info]

    # ---- forward -------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        if self.deploy:
            if self.training:
                raise RuntimeError(f'{self.family} was built with deploy=True, which is for '
                                   'inference only; build it with deploy=False to train')
            if not self.fused:
                self.switch_to_deploy()
        # Contiguous NCHW out, whatever layout the trunk runs in (the deploy forms and
        # ConvNeXt-1D compute in channels-last): mmdet's and mmseg's necks and heads assume
        # it, and mmcv's RoIAlign reads raw memory as NCHW (see mm_common.layout).
        return tuple(feature.contiguous() for index, feature
                     in enumerate(self.forward_stages(x, self.out_indices[-1]))
                     if index in self.out_indices)

    def switch_to_deploy(self) -> 'MultiScaleBackbone':
        """Fold BN into the convs in place (inference form, same outputs in eval mode)."""
        if not self.fused:
            fuse_modules(self)
            self.fused = True
        return self

    # ---- training state ------------------------------------------------------------
    def _frozen_modules(self) -> List[nn.Module]:
        if self.frozen_stages < 0:
            return []
        return self.stem_modules() + [module for index in range(self.frozen_stages)
                                      for module in self.stage_modules(index)]

    def _freeze(self):
        for module in self._frozen_modules():
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True):
        super().train(mode)
        self._freeze()
        if mode and self.norm_eval:
            # _BatchNorm covers BatchNorm1d/2d/3d and SyncBatchNorm alike.
            for module in self.modules():
                if isinstance(module, _BatchNorm):
                    module.eval()
        return self

    # ---- weights -------------------------------------------------------------------
    def init_weights(self):
        cfg = self.init_cfg
        if cfg is None:
            logger.info(f'{self.family}-{self.arch}: no init_cfg, training from scratch')
            return
        if not isinstance(cfg, dict) or cfg.get('type') != 'Pretrained' or not cfg.get('checkpoint'):
            raise BackboneConfigError(
                f"{self.family} init_cfg={cfg!r} is not supported: use "
                "dict(type='Pretrained', checkpoint='path/or/url.pth') or None")
        self.load_pretrained(cfg['checkpoint'], prefix=cfg.get('prefix'))

    def load_pretrained(self, checkpoint: str, prefix: Optional[str] = None) -> dict:
        """Load a classifier, backbone or detector checkpoint through the checkpoint
        pipeline (``backbones.weights``): every backbone tensor comes from the file
        (cropped where the family allows it) or is refused in one line; returns what was loaded."""
        if _WEIGHTS_LOADER is None:
            raise RuntimeError('no checkpoint loader is registered: import mm_efficient_backbones.backbones')
        return _WEIGHTS_LOADER(self, checkpoint, prefix)

    # ---- checkpoint forms (hooks of the checkpoint pipeline) ----------------------
    def match_checkpoint_form(self, state_dict) -> None:
        """Called with a checkpoint's weights (in this backbone's key layout) before they are
        fitted: a backbone that loads another form than its current one switches to it here."""

    def explain_misfit(self, state_dict) -> Optional[str]:
        """Why ``state_dict`` does not fit, where the family recognises the cause (e.g. a
        deploy-form file for a training-form backbone); None otherwise."""
        return None
