"""mmdet 3.x glue: ``custom_imports=dict(imports=['mm_efficient_backbones.detection'])`` registers the backbones
(``type='RecNeXt'`` ...) in mmdet's MODELS."""
from mmdet.registry import MODELS

from mm_efficient_backbones.mm_common import register_backbones

register_backbones(MODELS)
