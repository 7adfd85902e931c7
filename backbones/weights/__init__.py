"""Weights: checkpoint files (:mod:`.checkpoint`, :mod:`.files`), whether a state_dict fits a
model (:mod:`.fit`), the pipeline from a published file to a backbone's weights and the
converter (:mod:`.pipeline`), the checked download of releases (:mod:`.hub`), the
reparameterisation of trained checkpoints (:mod:`.reparameterize`) and the model zoo
(:mod:`.zoo`). No mm imports.

The models import nothing from here: importing this part registers its checkpoint pipeline
as the backbones' ``init_cfg`` loader and its checked download for timm's ``pretrained=True``
(``backbones/__init__.py`` imports it, so both are always in place).
"""
from ..models.multiscale import register_weights_loader
from ..models.timm_models import register_pretrained_fetcher
from .hub import fetch_pretrained
from .pipeline import load_pretrained

register_weights_loader(load_pretrained)
register_pretrained_fetcher(fetch_pretrained)
