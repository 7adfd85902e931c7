"""mmengine glue shared by ``detection/`` and ``segmentation/`` (they differ only in the
registry they pass in): backbone registration, the log bridge and mmcv's op layout fix."""
import logging

from mmengine.logging import print_log

from mm_efficient_backbones import backbones

from .layout import make_mmcv_ops_layout_safe


class _MMLogBridge(logging.Handler):
    """Forward the pure-PyTorch ``backbones`` logger to mmengine's current logger, so
    that pretrained-loading reports land in the run's log file."""

    def emit(self, record: logging.LogRecord) -> None:
        print_log(self.format(record), logger='current', level=record.levelno)


def register_backbones(registry) -> None:
    """Register every backbone of :data:`backbones.MM_BACKBONES` in ``registry``, and make
    mmcv's raw-memory ops safe for channels-last inputs (mm_common.layout)."""
    make_mmcv_ops_layout_safe()
    for name, backbone_cls in backbones.MM_BACKBONES.items():
        registry.register_module(name=name, module=backbone_cls, force=True)
    log = logging.getLogger('backbones')
    if not any(isinstance(h, _MMLogBridge) for h in log.handlers):
        log.addHandler(_MMLogBridge())
        log.setLevel(logging.INFO)
        log.propagate = False
