"""Efficient vision backbones as timm models (pure PyTorch + timm, no mm imports).

``import mm_efficient_backbones.backbones`` registers the models with timm, e.g.
``timm.create_model('recnext_m3')``. The ``*Backbone`` classes are the dense-prediction
trunks that ``detection/`` and ``segmentation/`` register in mmdet's and mmseg's MODELS.

The parts, each importing only the ones before it:

* ``models/``: the families and their layers; each family is declared once, in its file
  (``models/registry.py``: its ``Family`` record), and every table below derives from the records;
* ``weights/``: checkpoint files, the fit check, the conversion pipeline, downloads, the zoo;
* ``export/``: the deploy forms to ONNX and OpenVINO, checked in their runtimes;
* ``benchmarking/``: params, MACs, throughput and memory of the forms.

``errors.py`` is the one error base and exit path that every part and tool shares.
"""
from . import weights  # noqa: F401  (registers the checkpoint pipeline and the checked download with the models)
from .errors import CheckpointError
from .models import registry
from .models.convnext1d import CONVNEXT1D_ARCHS, CONVNEXT1D_VARIANTS, ConvNeXt1D, ConvNeXt1DBackbone
from .models.layers.oriented_conv import OrientedConv1d
from .models.multiscale import BackboneConfigError, MultiScaleBackbone
from .models.recnext import RECNEXT_ARCHS, RecNeXt, RecNeXtBackbone
from .models.registry import BackboneTarget, Family, guess_family
from .models.repnext import REPNEXT_ARCHS, RepNeXt, RepNeXtBackbone
from .models.rexnet import REXNET_ARCHS, ReXNet, ReXNetBackbone, ReXNetLite
from .models.timm_features import TimmFeaturesBackbone

# mm registry name -> backbone class; the mm glue registers exactly these.
MM_BACKBONES = registry.mm_backbones()
# timm classifier name -> (backbone class, arch[, options]): what convert_to_backbone_weights targets.
MODEL_TO_BACKBONE = registry.model_to_backbone()

__all__ = ['MM_BACKBONES', 'MODEL_TO_BACKBONE', 'BackboneTarget', 'BackboneConfigError', 'CheckpointError',
           'Family', 'MultiScaleBackbone', 'guess_family', 'registry',
           'RECNEXT_ARCHS', 'RecNeXt', 'RecNeXtBackbone',
           'REPNEXT_ARCHS', 'RepNeXt', 'RepNeXtBackbone',
           'REXNET_ARCHS', 'ReXNet', 'ReXNetBackbone', 'ReXNetLite', 'TimmFeaturesBackbone',
           'CONVNEXT1D_ARCHS', 'CONVNEXT1D_VARIANTS', 'ConvNeXt1D', 'ConvNeXt1DBackbone', 'OrientedConv1d']
