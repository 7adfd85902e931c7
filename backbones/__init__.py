"""Efficient vision backbones as timm models (pure PyTorch + timm, no mm imports).

``import backbones`` registers the models with timm, e.g. ``timm.create_model('recnext_m3')``.
The ``*Backbone`` classes are the dense-prediction trunks that ``detection/`` and
``segmentation/`` register in mmdet's and mmseg's MODELS.
"""
from .checkpoint import CheckpointError
from .multiscale import FAMILY_KEY_SIGNATURES, BackboneConfigError, MultiScaleBackbone
from .convnext1d import CONVNEXT1D_ARCHS, CONVNEXT1D_VARIANTS, TIMM_ARCHS, ConvNeXt1D, ConvNeXt1DBackbone
from .oriented_conv import OrientedConv1d
from .recnext import RECNEXT_ARCHS, RecNeXt, RecNeXtBackbone
from .repnext import REPNEXT_ARCHS, RepNeXt, RepNeXtBackbone
from .rexnet import REXNET_ARCHS, ReXNetBackbone, ReXNetLite
from .timm_features import TimmFeaturesBackbone
from .weights import BackboneTarget

# mm registry name -> backbone class; the mm glue registers exactly these.
MM_BACKBONES = {
    'RecNeXt': RecNeXtBackbone,
    'RepNeXt': RepNeXtBackbone,
    'ReXNet': ReXNetBackbone,
    'ConvNeXt1D': ConvNeXt1DBackbone,
}
# timm classifier name -> (backbone class, arch[, options]): what convert_to_backbone_weights targets.
MODEL_TO_BACKBONE = {f'recnext_{arch}': BackboneTarget(RecNeXtBackbone, arch) for arch in RECNEXT_ARCHS}
MODEL_TO_BACKBONE.update({f'repnext_{arch}': BackboneTarget(RepNeXtBackbone, arch) for arch in REPNEXT_ARCHS})
MODEL_TO_BACKBONE.update({spec.model: BackboneTarget(ReXNetBackbone, arch) for arch, spec in REXNET_ARCHS.items()})
# convnext_tiny_1d ... convnext_base_2dpp (Oriented1D's `--model convnext_tiny --variant 1d`).
MODEL_TO_BACKBONE.update({f'convnext_{arch}_{variant}': BackboneTarget(ConvNeXt1DBackbone, arch, variant=variant)
                          for arch in TIMM_ARCHS for variant in CONVNEXT1D_VARIANTS})

__all__ = ['MM_BACKBONES', 'MODEL_TO_BACKBONE', 'BackboneTarget', 'BackboneConfigError', 'CheckpointError',
           'MultiScaleBackbone',
           'FAMILY_KEY_SIGNATURES', 'RECNEXT_ARCHS', 'RecNeXt', 'RecNeXtBackbone',
           'REPNEXT_ARCHS', 'RepNeXt', 'RepNeXtBackbone',
           'REXNET_ARCHS', 'ReXNetBackbone', 'ReXNetLite', 'TimmFeaturesBackbone',
           'CONVNEXT1D_ARCHS', 'CONVNEXT1D_VARIANTS', 'ConvNeXt1D', 'ConvNeXt1DBackbone', 'OrientedConv1d']
