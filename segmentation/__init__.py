"""mmseg 1.x glue: ``custom_imports=dict(imports=['segmentation'])`` registers the
backbones (``type='RecNeXt'`` ...) in mmseg's MODELS."""
from mmseg.registry import MODELS

from mm_common import register_backbones

register_backbones(MODELS)
