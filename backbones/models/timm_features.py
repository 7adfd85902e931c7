"""Any timm model with ``features_only`` as a :class:`MultiScaleBackbone` family.

timm's feature extractor (``timm.create_model(name, features_only=True)``, a
``FeatureListNet``) is kept whole as ``self.body``: it is timm's own implementation, with
its own module names, so nothing is re-implemented here. What this adapter adds is the
mapping onto the base class's stages: the stages are timm's feature levels at stride 4
and beyond (a stride-2 level, where the model has one, belongs to the stem), and the
trunk hooks split ``body``'s ordered modules at those levels for ``frozen_stages``.

A family subclasses :class:`TimmFeaturesBackbone` with ``archs = {arch: timm model name}``
and, where its timm model flattens top-level ``nn.Sequential`` containers for features
(``feature_cfg=dict(flatten_sequential=True)``, e.g. ReXNet's ``features``), names them
in ``flattened_containers`` so that classifier checkpoints map onto ``body``'s keys.
"""
import re
from typing import Dict, Iterator, List, Tuple

import timm
import torch
from torch import nn

from .multiscale import BackboneConfigError, MultiScaleBackbone

__all__ = ['TimmFeaturesBackbone', 'MIN_STAGE_REDUCTION']

# The base class's stage 0 has stride 4; shallower timm levels are part of the stem.
MIN_STAGE_REDUCTION = 4


class TimmFeaturesBackbone(MultiScaleBackbone):
    """timm ``features_only`` extractor as stage features at strides 4, 8, 16, 32 (...).

    State-dict keys are ``body.`` + timm's feature-extractor keys; a timm classifier
    checkpoint maps onto them through :meth:`remap_classifier_keys`.
    """

    family = 'TimmFeatures'
    archs: Dict[str, str] = {}  # arch -> timm model name
    # timm classifier heads (dropped when loading a classifier checkpoint).
    classifier_prefixes: Tuple[str, ...] = ('head', 'fc', 'classifier')
    # Top-level nn.Sequential containers whose children timm's FeatureListNet hoists to
    # the top level as '<container>_<child>' (flatten_sequential=True).
    flattened_containers: Tuple[str, ...] = ()

    def build(self, arch: str, drop_path_rate: float, in_channels: int) -> List[dict]:
        if self.deploy and not self.has_deploy_form(arch):
            raise BackboneConfigError(
                f'{self.family}-{arch} has no deploy (BN-folded) form: build it with deploy=False')
        kwargs = dict(drop_path_rate=drop_path_rate) if drop_path_rate else {}
        self.body = timm.create_model(self.timm_name(arch), pretrained=False, features_only=True,
                                      in_chans=in_channels, **kwargs)
        levels = self.body.feature_info.get_dicts()
        # body.return_layers: {module name in body: output index}, in forward order.
        names = list(self.body.keys())
        ends = [names.index(layer) for layer in self.body.return_layers]
        self._stage_levels = [i for i, level in enumerate(levels)
                              if level['reduction'] >= MIN_STAGE_REDUCTION]
        if not self._stage_levels:
            raise BackboneConfigError(f'{self.timm_name(arch)} has no feature level at stride >= '
                                      f'{MIN_STAGE_REDUCTION}; it cannot serve as a dense backbone')
        shallow = [ends[i] for i in range(len(levels)) if i not in self._stage_levels]
        first = ends[self._stage_levels[0]]
        # The stem ends at the last stride-2 level; without one, just before stage 0's output module.
        stem_end = max(shallow) + 1 if shallow else first
        self._stem_names = names[:stem_end]
        self._stage_names, start = [], stem_end
        for level in self._stage_levels:
            self._stage_names.append(names[start:ends[level] + 1])
            start = ends[level] + 1
        return [dict(num_chs=levels[i]['num_chs'], reduction=levels[i]['reduction'],
                     module=f"body.{names[ends[i]]}") for i in self._stage_levels]

    def timm_name(self, arch: str) -> str:
        return self.archs[arch]

    def has_deploy_form(self, arch: str) -> bool:
        """Whether ``arch``'s modules have fuse() (a BN-folded form); timm's own models do not."""
        return False

    # ---- trunk hooks ---------------------------------------------------------------
    def forward_stages(self, x: torch.Tensor, last: int) -> Iterator[torch.Tensor]:
        levels = self.body(x)
        for level in self._stage_levels[:last + 1]:
            yield levels[level]

    def stem_modules(self) -> List[nn.Module]:
        return [self.body[name] for name in self._stem_names]

    def stage_modules(self, index: int) -> List[nn.Module]:
        return [self.body[name] for name in self._stage_names[index]]

    # ---- checkpoint layout -----------------------------------------------------------
    @classmethod
    def remap_classifier_keys(cls, state_dict):
        """timm classifier keys -> ``body.`` keys (keys already under ``body.`` are kept)."""
        containers = '|'.join(map(re.escape, cls.flattened_containers))
        # 'features.3.conv.weight' -> 'features_3.conv.weight' where 'features' is flattened.
        flatten = re.compile(rf'^({containers})\.([^.]+)\.') if containers else None
        remapped = {}
        for key, value in state_dict.items():
            if not key.startswith('body.'):
                key = 'body.' + (flatten.sub(r'\1_\2.', key) if flatten else key)
            remapped[key] = value
        return remapped
