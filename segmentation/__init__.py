"""mmseg 1.x glue: ``custom_imports=dict(imports=['mm_efficient_backbones.segmentation'])`` registers the
backbones (``type='RecNeXt'`` ...) in mmseg's MODELS."""
from mmseg.registry import MODELS

from mm_efficient_backbones.mm_common import register_backbones

register_backbones(MODELS)
