"""mmengine glue shared by ``detection/`` and ``segmentation/`` (they differ only in the
registry they pass in): backbone registration, the log bridge and mmcv's op layout fix."""
import logging

from mmengine.logging import print_log

from mm_efficient_backbones.backbones.models import registry

from .layout import make_mmcv_ops_layout_safe


class _MMLogBridge(logging.Handler):
    """Forward the pure-PyTorch ``backbones`` logger to mmengine's current logger, so
    that pretrained-loading reports land in the run's log file."""

    def emit(self, record: logging.LogRecord) -> None:
        print_log(self.format(record), logger='current', level=record.levelno)


def register_backbones(models) -> None:
    """Register the backbone of every family (``registry.mm_backbones()``) in ``models``, and
    make mmcv's raw-memory ops safe for channels-last inputs (mm_common.layout)."""
    make_mmcv_ops_layout_safe()
    for name, backbone_cls in registry.mm_backbones().items():
        models.register_module(name=name, module=backbone_cls, force=True)
    log = logging.getLogger('backbones')
    if not any(isinstance(h, _MMLogBridge) for h in log.handlers):
        log.addHandler(_MMLogBridge())
        log.setLevel(logging.INFO)
        log.propagate = False
