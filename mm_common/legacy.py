"""mmdet 2.x / mmseg 0.x checkpoints (the authors' published detectors and segmentors) on
mmdet 3.3 / mmseg 1.2 models, mapped in one place.

What changed, from reading mmdet 2.28.2 / mmseg 0.30.0 against mmdet 3.3.0 / mmseg 1.2.2
for the modules our configs use (TwoStageDetector, FPN, RPNHead/AnchorHead,
StandardRoIHead, Shared2FCBBoxHead/ConvFCBBoxHead/BBoxHead, FCNMaskHead; EncoderDecoder,
FPNHead, UPerHead/PSP, FCNHead; and mmcv 1.7.2 against 2.1.0 for ConvModule and its
norm-layer names):

* parameter and buffer names: unchanged. Every one of those modules creates the same
  attributes (``rpn_conv``/``rpn_cls``/``rpn_reg``, ``shared_fcs``, ``fc_cls``/``fc_reg``,
  ``convs``/``upsample``/``conv_logits``, ``lateral_convs``/``fpn_convs``,
  ``scale_heads``, ``psp_modules``/``bottleneck``/``fpn_bottleneck``, ``conv_seg`` ...);
  only how they are built moved to ``MODELS.build``. The 3.x data preprocessors' mean/std
  buffers are not persistent, so they add no keys. The authors' RecNeXt/RepNeXt trunks
  name their modules as our backbones do. Oriented1D's ConvNeXt-1D trunks wrap every
  oriented conv in ``Wrapper(conv)`` (``backbone.stages.0.0.dwconv.conv.theta``): the one
  rename in :data:`KEY_RENAMES`, the same the backbone's own key remap applies.
* ``meta``: 2.x/0.x store ``CLASSES``/``PALETTE`` and ``mmdet_version``/``mmseg_version``
  (and mmcv's ``config`` text, ``hook_msgs``); 3.x/1.x keep classes and palette in
  ``meta['dataset_meta']`` (mmdet's ``init_detector`` and mmseg's ``init_model`` read it).
* ``optimizer``: mmcv 1.x's optimizer state; of no use to ``load_from`` or testing (a 2.x
  run cannot be resumed as a 3.x one), so it is dropped.

:class:`LegacyCheckpointHook` applies :func:`convert_legacy_checkpoint` in mmengine's
``after_load_checkpoint`` step, before the weights reach the model, and logs what it
mapped; tools/train.py (``load_from``) and tools/test.py add it to every run.
"""
import re
from typing import Dict, List, Optional, Tuple

from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.registry import HOOKS

from mm_efficient_backbones.backbones.models.convnext1d import WRAPPED_ORIENTED_CONV_KEY

# library -> [(regex on a state_dict key, replacement)], applied in order.
ORIENTED1D_WRAPPER = (WRAPPED_ORIENTED_CONV_KEY, r'\1.\2')
KEY_RENAMES: Dict[str, List[Tuple[str, str]]] = {'mmdet': [ORIENTED1D_WRAPPER], 'mmseg': [ORIENTED1D_WRAPPER]}
# 2.x/0.x meta key -> 3.x/1.x dataset_meta key.
DATASET_META_KEYS = {'CLASSES': 'classes', 'PALETTE': 'palette'}
LEGACY_MAJOR = {'mmdet': '2', 'mmseg': '0'}
# Training state of the mmcv 1.x runner that a 3.x load cannot use.
DROPPED_KEYS = ('optimizer',)


def legacy_origin(checkpoint: dict) -> Optional[Tuple[str, str]]:
    """``('mmdet', '2.28.2')`` for an mmdet 2.x / mmseg 0.x checkpoint, else None."""
    meta = checkpoint.get('meta') if isinstance(checkpoint, dict) else None
    if not isinstance(meta, dict):
        return None
    for library, major in LEGACY_MAJOR.items():
        version = str(meta.get(f'{library}_version', ''))
        if version.split('.')[0] == major:
            return library, version
    return None


def convert_legacy_checkpoint(checkpoint: dict) -> List[str]:
    """Map a 2.x/0.x checkpoint to the 3.x/1.x layout in place; return what was mapped
    (empty for a checkpoint that is not legacy)."""
    origin = legacy_origin(checkpoint)
    if origin is None:
        return []
    library, version = origin
    mapped = [f'{library} {version} checkpoint']
    meta = checkpoint['meta']
    dataset_meta = meta.setdefault('dataset_meta', {})
    for old, new in DATASET_META_KEYS.items():
        if old in meta:
            dataset_meta[new] = meta.pop(old)
            mapped.append(f'meta.{old} -> meta.dataset_meta.{new}')
    meta[f'legacy_{library}_version'] = meta.pop(f'{library}_version')
    for key in DROPPED_KEYS:
        if checkpoint.pop(key, None) is not None:
            mapped.append(f'dropped {key} (mmcv 1.x training state)')
    state_dict = checkpoint.get('state_dict', {})
    renamed = 0
    for pattern, replacement in KEY_RENAMES[library]:
        for key in [k for k in state_dict if re.search(pattern, k)]:
            state_dict[re.sub(pattern, replacement, key)] = state_dict.pop(key)
            renamed += 1
    mapped.append(f'renamed {renamed} of {len(state_dict)} state_dict keys (the heads in our configs '
                  f'kept their {library} {LEGACY_MAJOR[library]}.x names'
                  + ("; Oriented1D's Wrapper(conv) keys unwrapped" if renamed else '') + ')')
    return mapped


@HOOKS.register_module(force=True)
class LegacyCheckpointHook(Hook):
    """Convert an mmdet 2.x / mmseg 0.x checkpoint as it is loaded (load_from, testing)."""

    priority = 'VERY_HIGH'

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        mapped = convert_legacy_checkpoint(checkpoint)
        if mapped:
            print_log(f'legacy checkpoint: {"; ".join(mapped)}', logger='current')


def add_legacy_hook(cfg) -> None:
    """Make a run convert legacy checkpoints (idempotent)."""
    hooks = list(cfg.get('custom_hooks') or [])
    if not any(h.get('type') in ('LegacyCheckpointHook', LegacyCheckpointHook) for h in hooks):
        hooks.append(dict(type='LegacyCheckpointHook'))
    cfg.custom_hooks = hooks
