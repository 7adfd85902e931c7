"""The model zoo: every model's ImageNet weights, the papers' sizes, and the configs with
the results published for them.

* :data:`MODELS`: one :class:`ZooModel` per model of the project, in the family records'
  order (``models.registry``): the row :data:`ROWS` gives it (the params / MACs its paper
  prints, as strings so that the paper's precision is kept, and its :class:`ZooConfig`
  rows), or, for a model without one, its weights as its family's releases say.
* Readers: :func:`model`, :func:`configs`, :func:`config`, :func:`size_note`.

The release URLs are the families' (``registry.classifier_url`` / ``downstream_url``);
``scripts/zoo_table.py`` renders this table for the README; the tests check it against
``configs/`` (every file is here, every header's "Published" line agrees) and the README.
No mm imports.
"""
from dataclasses import dataclass, field
from typing import Dict, Iterator, Optional, Tuple

from ..models import registry

# The tasks of the trained downstream checkpoints, as they appear in the release names.
DOWNSTREAM_TASKS = ('coco', 'ade20k')

# Where a model's ImageNet weights come from, besides a direct release (see ZooModel.weights).
WEIGHTS = {
    'release': "the authors' direct download, timm tags (pretrained=True, the configs' init_cfg)",
    'timm': "timm's own weights (pretrained=True); clovaai's Google Drive file converts too",
    'gdrive': 'Google Drive only: download by hand, then convert_to_backbone_weights',
    'none': 'none published: train from scratch or bring your own',
}

# What a paper counts, where its params / MACs differ from ours by more than rounding.
SIZE_NOTES = {
    'recnext': "the paper's other rows match this count of the deploy form",
    'repnext': 'paper counts the reparameterised deploy form, as this table does',
    'rexnet': 'paper counts the ImageNet classifier (1000-class head)',
    'rexnet_lite': 'paper counts the training form (BN not folded)',
    'convnext': 'paper counts the ImageNet classifier (1000-class head)',
}

# The metrics a config's "Published" header line may state, as the table names them.
METRICS = ('box AP', 'mask AP', 'mIoU')


@dataclass(frozen=True)
class ZooConfig:
    """A config under configs/ and what its authors published for it."""
    path: str                          # relative to the repo root
    method: str                        # detector / segmentor and schedule, briefly
    published: Dict[str, str] = field(default_factory=dict)  # METRICS -> value as printed; {}: none
    source: str = ''                   # whose figure, and how it was measured
    checkpoint: Optional[str] = None   # URL of the authors' trained detector / segmentor
    multi_scale: bool = False          # the published mIoU is multi-scale (else single scale)
    epoch: Optional[int] = None        # the epoch of the published figure where it is not the last one


    @property
    def task(self) -> str:
        return 'ade20k' if '_ade20k' in self.path else 'coco'

    def published_text(self) -> str:
        """``'41.7 box AP / 38.6 mask AP'``, or ``'-'`` where nothing is published."""
        text = ' / '.join(f'{self.published[m]} {m}' for m in METRICS if m in self.published)
        notes = ['multi-scale'] * self.multi_scale + [f'epoch {self.epoch}'] * bool(self.epoch)
        return (text + (f' ({", ".join(notes)})' if notes else '')) if text else '-'


@dataclass(frozen=True)
class ZooModel:
    """One model: its timm name, its ImageNet weights, the paper's size and its configs."""
    name: str
    weights: str                       # a key of WEIGHTS
    params: Optional[str] = None       # paper's params (M), as printed
    macs: Optional[str] = None         # paper's MACs (G) at 224x224, as printed
    configs: Tuple[ZooConfig, ...] = ()
    note: str = ''                     # anything a user must know about this row


# ---- the configs' recipes, shared by a family's rows ---------------------------------------
MASK_RCNN = 'Mask R-CNN 1x'
FASTER_RCNN = 'Faster R-CNN 1x'
SEMANTIC_FPN = 'Semantic FPN 80k'
UPERNET = 'UPerNet 160k'
CASCADE = 'Cascade Mask R-CNN 3x'


def _downstream(family: str, arch: str, task: str) -> str:
    return registry.downstream_url(f'{family[:-1]}{arch}', task)


def _suous(family: str, arch: str, coco: Tuple[str, str], ade: str, source: str,
           coco_epoch: Optional[int] = None) -> Tuple[ZooConfig, ...]:
    """RecNeXt / RepNeXt M3-M5, A3-A5: Mask R-CNN and Semantic FPN published, UPerNet not.
    ``coco_epoch``: the epoch of the published COCO figure where the log's last differs."""
    name = f'{family[:-1]}{arch}'
    return (
        ZooConfig(f'configs/{name}_coco.py', MASK_RCNN, {'box AP': coco[0], 'mask AP': coco[1]},
                  f'{source}, mmdet 2.x', _downstream(family, arch, 'coco'), epoch=coco_epoch),
        ZooConfig(f'configs/{name}_ade20k.py', SEMANTIC_FPN, {'mIoU': ade},
                  f'{source}, mmseg 0.x, single scale', _downstream(family, arch, 'ade20k')),
        ZooConfig(f'configs/{name}_ade20k_upernet.py', UPERNET),
    )


def _clovaai(width: str, faster: Optional[str], mask: Optional[Tuple[str, str]], ade: bool = False):
    """ReXNet: Faster / Mask R-CNN at 1200x800 as clovaai's README; Semantic FPN ours, unpublished."""
    source = 'clovaai/rexnet README, val2017'
    rows = [ZooConfig(f'configs/rexnet_{width}_coco_faster_rcnn.py', FASTER_RCNN,
                      {'box AP': faster} if faster else {}, source if faster else ''),
            ZooConfig(f'configs/rexnet_{width}_coco.py', MASK_RCNN,
                      {'box AP': mask[0], 'mask AP': mask[1]} if mask else {}, source if mask else '')]
    if ade:
        rows.append(ZooConfig(f'configs/rexnet_{width}_ade20k.py', SEMANTIC_FPN))
    return tuple(rows)


def _oriented1d(size: str, variant: str, box: str, mask: str, miou: str) -> Tuple[ZooConfig, ...]:
    """ConvNeXt-1D: Cascade Mask R-CNN 3x and UPerNet 160k (multi-scale mIoU), as Oriented1D."""
    stem = f'configs/convnext1d_{size}_{variant}'
    return (ZooConfig(f'{stem}_coco.py', CASCADE, {'box AP': box, 'mask AP': mask}, 'Oriented1D, mmdet 2.x'),
            ZooConfig(f'{stem}_ade20k.py', UPERNET, {'mIoU': miou}, 'Oriented1D, mmseg 0.x', multi_scale=True))


# The rows of the models with published sizes, configs or weights other than their family's
# releases; every other model of the project gets a row from its family record.
ROWS: Tuple[ZooModel, ...] = (
    # RecNeXt-M (RecConv) and RecNeXt-A (RecAttn): params / MACs from the RecNeXt README.
    ZooModel('recnext_m0', 'release', '2.5', '0.4'),
    ZooModel('recnext_m1', 'release', '5.2', '0.9'),
    ZooModel('recnext_m2', 'release', '6.8', '1.2'),
    ZooModel('recnext_m3', 'release', '8.2', '1.4', _suous('recnext_m', 'm3', ('41.7', '38.6'), '41.0', 'RecNeXt')),
    ZooModel('recnext_m4', 'release', '14.1', '2.4', _suous('recnext_m', 'm4', ('43.5', '39.7'), '43.6', 'RecNeXt', 10)),
    ZooModel('recnext_m5', 'release', '22.9', '4.7', _suous('recnext_m', 'm5', ('44.6', '40.6'), '46.0', 'RecNeXt', 9)),
    ZooModel('recnext_a0', 'release', '2.8'),
    ZooModel('recnext_a1', 'release', '5.9'),
    ZooModel('recnext_a2', 'release', '7.9'),
    ZooModel('recnext_a3', 'release', '9.0', None, _suous('recnext_a', 'a3', ('42.1', '38.8'), '41.9', 'RecNeXt')),
    ZooModel('recnext_a4', 'release', '15.8', None, _suous('recnext_a', 'a4', ('43.5', '39.8'), '43.0', 'RecNeXt', 10)),
    ZooModel('recnext_a5', 'release', '25.7', None, _suous('recnext_a', 'a5', ('44.4', '40.3'), '46.5', 'RecNeXt', 9)),
    # RepNeXt-M: the deploy form's params / MACs, from the RepNeXt README.
    ZooModel('repnext_m0', 'release', '2.3', '0.4'),
    ZooModel('repnext_m1', 'release', '4.8', '0.8'),
    ZooModel('repnext_m2', 'release', '6.5', '1.1'),
    ZooModel('repnext_m3', 'release', '7.8', '1.3', _suous('repnext_m', 'm3', ('40.8', '37.8'), '40.6', 'RepNeXt', 9)),
    ZooModel('repnext_m4', 'release', '13.3', '2.3', _suous('repnext_m', 'm4', ('42.9', '39.1'), '43.3', 'RepNeXt', 9)),
    ZooModel('repnext_m5', 'release', '21.7', '4.5', _suous('repnext_m', 'm5', ('44.7', '40.7'), '45.0', 'RepNeXt')),
    # ReXNet: params / MACs ("FLOPs") from clovaai's README; 0.9 and 2.2 appear there only in
    # the COCO tables (the paper gives 4.1 M params for 0.9), and clovaai publishes no ImageNet
    # weights for them.
    ZooModel('rexnet_090', 'none', '4.1', None, _clovaai('090', '38.0', ('38.7', '35.2')),
             note='no ImageNet weights published for ReXNet-0.9'),
    ZooModel('rexnet_100', 'timm', '4.8', '0.40', _clovaai('100', '38.5', ('38.9', '35.4'), ade=True)),
    ZooModel('rexnet_130', 'timm', '7.6', '0.66'),
    ZooModel('rexnet_150', 'timm', '9.7', '0.88', _clovaai('150', None, None, ade=True)),
    ZooModel('rexnet_200', 'timm', '16', '1.5', _clovaai('200', None, None)),
    ZooModel('rexnet_220', 'none', configs=_clovaai('220', '41.5', ('42.0', '37.8')),
             note='no ImageNet weights published for ReXNet-2.2; Faster R-CNN AP50 64.0, AP75 44.9'),
    ZooModel('rexnet_300', 'timm', '34', '3.4'),
    # ReXNet-R: timm's channel-rounded variant; timm has weights for 2.0 and 3.0 only.
    ZooModel('rexnetr_100', 'none'),
    ZooModel('rexnetr_130', 'none'),
    ZooModel('rexnetr_150', 'none'),
    ZooModel('rexnetr_200', 'timm'),
    ZooModel('rexnetr_300', 'timm'),
    ZooModel('rexnet_lite_100', 'gdrive', '4.7', '0.41'),
    ZooModel('rexnet_lite_130', 'gdrive', '6.8', '0.65'),
    ZooModel('rexnet_lite_150', 'gdrive', '8.3', '0.84'),
    ZooModel('rexnet_lite_200', 'gdrive', '13', '1.5'),
    # ConvNeXt-1D (Oriented1D): params of the tiny models from the paper; COCO / ADE20K of all.
    ZooModel('convnext_tiny_2d', 'gdrive', configs=_oriented1d('tiny', '2d', '50.2', '43.6', '46.6')),
    ZooModel('convnext_tiny_1d', 'gdrive', '28.5', None, _oriented1d('tiny', '1d', '50.3', '43.6', '45.2')),
    ZooModel('convnext_tiny_1dpp', 'gdrive', '29.2', None, _oriented1d('tiny', '1dpp', '51.3', '44.5', '47.4')),
    ZooModel('convnext_tiny_2dpp', 'gdrive', '29.2', None, _oriented1d('tiny', '2dpp', '51.2', '44.4', '48.1')),
    ZooModel('convnext_base_2d', 'gdrive', configs=_oriented1d('base', '2d', '52.4', '45.2', '49.4')),
    ZooModel('convnext_base_1d', 'gdrive', configs=_oriented1d('base', '1d', '52.8', '45.7', '49.4')),
    ZooModel('convnext_base_1dpp', 'gdrive', configs=_oriented1d('base', '1dpp', '52.9', '46.0', '50.7')),
    ZooModel('convnext_base_2dpp', 'gdrive', configs=_oriented1d('base', '2dpp', '52.9', '45.8', '50.2')),
)



def _default_row(name: str) -> ZooModel:
    return ZooModel(name, 'release' if registry.classifier_url(name) else 'none')


_ROWS_BY_NAME = {entry.name: entry for entry in ROWS}
MODELS: Tuple[ZooModel, ...] = tuple(_ROWS_BY_NAME.get(name) or _default_row(name) for name in registry.model_names())
_BY_NAME = {entry.name: entry for entry in MODELS}


def model(name: str) -> Optional[ZooModel]:
    """The table's row of ``name``, or None for a model it does not list (e.g. resnet50)."""
    return _BY_NAME.get(name)


def configs() -> Iterator[Tuple[ZooModel, ZooConfig]]:
    """Every (model, config) pair of the table."""
    for entry in MODELS:
        for cfg in entry.configs:
            yield entry, cfg


def config(path: str) -> Optional[Tuple[ZooModel, ZooConfig]]:
    """The (model, config) row of a config file (``configs/x.py`` or any path ending so)."""
    normalised = path.replace('\\', '/')
    for entry, cfg in configs():
        if normalised == cfg.path or normalised.endswith('/' + cfg.path):
            return entry, cfg
    return None


def size_note(name: str) -> str:
    """Why ``name``'s paper params / MACs can differ from this project's count (the note of
    the longest name prefix in SIZE_NOTES: ``rexnet_lite`` before ``rexnet``)."""
    prefixes = [prefix for prefix in SIZE_NOTES if name == prefix or name.startswith(prefix + '_')]
    return SIZE_NOTES[max(prefixes, key=len)] if prefixes else 'unexplained'

