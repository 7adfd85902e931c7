"""The one declaration of each backbone family, and the tables that derive from it.

Each family file (``recnext.py``, ``repnext.py``, ``rexnet.py``, ``convnext1d.py``) declares its
family once, as ``FAMILY = register(Family(...))``, and its explicit timm factories
(``@register_model def recnext_m3(...)``) call one ``_create_<family>`` helper that reads the
record. Every list of models, types and releases is read from the records:

* the mm glue's types (:func:`mm_backbones`) and what each timm name converts to
  (:func:`backbone_target`, :func:`model_to_backbone`);
* the project's models (:func:`model_names`) and their family (:func:`family_of_model`);
* whose checkpoint a file is, from its keys (:func:`guess_family`);
* the release URLs (:func:`classifier_url`, :func:`downstream_url`, :func:`release_urls`) and
  each family's timm pretrained cfgs (:meth:`Family.pretrained_cfgs`);
* the ``TYPE:ARCH[:VARIANT]`` specs (:func:`backbone_specs`, parsed in :mod:`.specs`).

``models/__init__.py`` imports every module of the models package, so a new family file is
found without being listed anywhere. Pure data and lookups: no mm imports.
"""
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Tuple

__all__ = ['BackboneTarget', 'Family', 'Model', 'Release', 'backbone_specs', 'backbone_target', 'classifier_url',
           'downstream_url', 'families', 'family', 'family_of_model', 'guess_family', 'mm_backbones',
           'model_names', 'model_to_backbone', 'register', 'release_urls']

StateDict = Dict[str, Any]


@dataclass(frozen=True)
class Model:
    """One timm model name of a family: its arch, and the backbone options the name fixes
    too (ConvNeXt-1D's ``variant``)."""
    arch: str
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Release:
    """Files the authors publish for direct download in one URL folder.

    ``classifiers`` maps timm tags to file names (``'{model}'`` is filled in); its first tag
    is timm's default for the model. ``downstream`` maps tasks (``'coco'``, ``'ade20k'``) to
    the files of the trained detectors and segmentors of ``downstream_models``.
    """
    base: str
    models: Tuple[str, ...]
    classifiers: Mapping[str, str]
    downstream_models: Tuple[str, ...] = ()
    downstream: Mapping[str, str] = field(default_factory=dict)

    def classifier_url(self, model: str, tag: str) -> Optional[str]:
        if model not in self.models or tag not in self.classifiers:
            return None
        return self.base + self.classifiers[tag].format(model=model)

    def downstream_url(self, model: str, task: str) -> Optional[str]:
        if model not in self.downstream_models or task not in self.downstream:
            return None
        return self.base + self.downstream[task].format(model=model)

    def urls(self) -> set:
        return ({self.classifier_url(model, tag) for model in self.models for tag in self.classifiers}
                | {self.downstream_url(model, task) for model in self.downstream_models for task in self.downstream})


class BackboneTarget(tuple):
    """What a timm classifier name converts to: ``(backbone class, arch)``, plus the
    constructor options that the name fixes too (ConvNeXt-1D's ``variant``).

    It unpacks as the pair; :meth:`build` passes the options as well.
    """

    def __new__(cls, backbone_cls: type, arch: str, **options):
        target = super().__new__(cls, (backbone_cls, arch))
        target.options = dict(options)
        return target

    def __eq__(self, other):
        return tuple.__eq__(self, other) is True and self.options == getattr(other, 'options', {})

    def __ne__(self, other):
        return not self == other

    __hash__ = tuple.__hash__

    def __repr__(self):
        options = ''.join(f', {k}={v!r}' for k, v in self.options.items())
        return f'BackboneTarget({self.backbone_cls.__name__}, {self.arch!r}{options})'

    @property
    def backbone_cls(self) -> type:
        return self[0]

    @property
    def arch(self) -> str:
        return self[1]

    @property
    def family(self) -> str:
        return self.backbone_cls.family

    def build(self, **kwargs):
        return self.backbone_cls(self.arch, **self.options, **kwargs)


@dataclass(frozen=True)
class Family:
    """Everything the package knows about one family, declared once in its file.

    * ``type``: the mm registry name (``type='RecNeXt'`` in configs); also the backbone's
      ``family`` in messages;
    * ``backbone``: the dense-prediction class (a ``MultiScaleBackbone``);
    * ``classifiers``: the timm classifier classes (ReXNet has two: timm's RexNet layout and
      ReXNet-lite);
    * ``archs``: the arch table (named fields), the backbone's ``arch`` values;
    * ``models``: timm name -> :class:`Model` (arch, options); each has an explicit factory
      in the family file;
    * ``key_signature``: a regex that the family's checkpoint keys match (and no other
      family's), so that a wrong file is named by what it is;
    * ``checkpoint_filter(state_dict, model=None)``: the authors' key layouts -> the
      classifier's, timm's ``pretrained_filter_fn`` (None: the files are in it already);
    * ``releases``: the direct downloads (:class:`Release`);
    * ``deploy_state``: whether the deploy form has a state_dict of its own (RepNeXt's
      collapsed branches), which ``--deploy`` conversion and ``reparameterize`` write;
    * ``variant_option`` / ``variants``: the backbone option that a third spec field sets
      (``ConvNeXt1D:tiny:1d`` sets ``variant='1d'``) and its values.
    """
    type: str
    backbone: type
    classifiers: Tuple[type, ...]
    archs: Mapping[str, Any]
    models: Mapping[str, Model]
    key_signature: str
    checkpoint_filter: Optional[Callable[..., StateDict]] = None
    releases: Tuple[Release, ...] = ()
    deploy_state: bool = False
    variant_option: Optional[str] = None
    variants: Tuple[str, ...] = ()

    def filter_checkpoint(self, state_dict: StateDict, model=None) -> StateDict:
        """timm's ``pretrained_filter_fn``: a published file's keys -> the classifier's."""
        return self.checkpoint_filter(state_dict, model) if self.checkpoint_filter else state_dict

    def target(self, name: str) -> BackboneTarget:
        entry = self.models[name]
        return BackboneTarget(self.backbone, entry.arch, **entry.options)

    def tags(self, model: str) -> Dict[str, str]:
        """{timm tag: URL} of ``model``'s released classifiers, timm's default first."""
        return {tag: url for release in self.releases for tag in release.classifiers
                if (url := release.classifier_url(model, tag))}

    def pretrained_cfgs(self, make_cfg: Callable[..., dict]) -> Dict[str, dict]:
        """``{'model.tag': cfg}`` for timm's ``generate_default_cfgs``: one cfg per released
        file, made by the family's ``make_cfg(url=...)``; a model without a release gets one
        untagged cfg, so that it still registers."""
        cfgs = {}
        for model in self.models:
            tagged = self.tags(model)
            cfgs.update({f'{model}.{tag}': make_cfg(url=url) for tag, url in tagged.items()})
            if not tagged:
                cfgs[model] = make_cfg()
        return cfgs

    def specs(self) -> List[str]:
        """Every ``TYPE:ARCH`` (``TYPE:ARCH:VARIANT`` where the family has variants)."""
        if not self.variants:
            return [f'{self.type}:{arch}' for arch in self.archs]
        return [f'{self.type}:{arch}:{variant}' for arch in self.archs for variant in self.variants]


_FAMILIES: Dict[str, Family] = {}
# What every classifier has: timm's model API, and the one deploy verb (with timm's alias).
CLASSIFIER_API = ('forward_intermediates', 'prune_intermediate_layers', 'reset_classifier', 'group_matcher',
                  'set_grad_checkpointing', 'switch_to_deploy', 'fuse')


def register(record: Family) -> Family:
    """Collect a family's record (the family file's ``FAMILY = register(Family(...))``),
    after checking it against the others; gives the backbone class its ``family`` name."""
    if record.type in _FAMILIES and _FAMILIES[record.type].backbone is not record.backbone:
        raise ValueError(f'family {record.type!r} is declared twice')
    taken = {name: other.type for other in _FAMILIES.values() if other.type != record.type for name in other.models}
    for name, entry in record.models.items():
        if name in taken:
            raise ValueError(f'{record.type} model {name!r} is already a {taken[name]} model')
        if entry.arch not in record.archs:
            raise ValueError(f'{record.type} model {name!r}: arch {entry.arch!r} is not in its arch table')
        if record.variant_option in entry.options and entry.options[record.variant_option] not in record.variants:
            raise ValueError(f'{record.type} model {name!r}: unknown {record.variant_option} '
                             f'{entry.options[record.variant_option]!r}')
    for release in record.releases:
        unknown = sorted(set(release.models + release.downstream_models) - set(record.models))
        if unknown:
            raise ValueError(f'{record.type} release {release.base} names unknown models {unknown}')
    for cls in record.classifiers:
        missing = [name for name in CLASSIFIER_API if not callable(getattr(cls, name, None))]
        if missing:
            raise ValueError(f'{record.type} classifier {cls.__name__} lacks {", ".join(missing)}')
    if not callable(getattr(record.backbone, 'switch_to_deploy', None)):
        raise ValueError(f'{record.type} backbone {record.backbone.__name__} lacks switch_to_deploy')
    if dict(record.backbone.archs) != dict(record.archs):
        raise ValueError(f'{record.type}: the backbone {record.backbone.__name__} has another arch table')
    re.compile(record.key_signature)
    record.backbone.family = record.type
    _FAMILIES[record.type] = record
    return record


# ---- lookups ---------------------------------------------------------------------------
def families() -> List[Family]:
    """Every registered family, in registration order."""
    return list(_FAMILIES.values())


def family(type_name: str) -> Optional[Family]:
    """The family registered as mm type ``type_name``, or None."""
    return _FAMILIES.get(type_name)


def family_of_model(name: str) -> Optional[Family]:
    """The family of timm model ``name`` (``recnext_m3``), or None for a model of no family."""
    return next((record for record in _FAMILIES.values() if name in record.models), None)


def model_names() -> List[str]:
    """Every timm model of the project, family by family."""
    return [name for record in _FAMILIES.values() for name in record.models]


def mm_backbones() -> Dict[str, type]:
    """mm registry name -> backbone class: exactly what the mm glue registers."""
    return {record.type: record.backbone for record in _FAMILIES.values()}


def backbone_target(name: str) -> Optional[BackboneTarget]:
    """What timm model ``name`` converts to, or None for a model of no family."""
    record = family_of_model(name)
    return record.target(name) if record else None


def model_to_backbone() -> Dict[str, BackboneTarget]:
    """timm model name -> :class:`BackboneTarget`, for every model of the project."""
    return {name: record.target(name) for record in _FAMILIES.values() for name in record.models}


def backbone_specs() -> List[str]:
    """``TYPE:ARCH[:VARIANT]`` of every mm backbone."""
    return [spec for record in _FAMILIES.values() for spec in record.specs()]


def guess_family(keys: Iterable[str]) -> Optional[str]:
    """The type of the family whose key signature most of ``keys`` match, or None."""
    keys = list(keys)
    scores = {record.type: sum(bool(re.search(record.key_signature, key)) for key in keys)
              for record in _FAMILIES.values()}
    best = max(scores, key=scores.get, default=None)
    return best if best is not None and scores[best] > 0 else None


# ---- releases ----------------------------------------------------------------------------
def classifier_url(model: str, tag: Optional[str] = None) -> Optional[str]:
    """URL of ``model``'s released classifier for a timm tag (default: timm's default tag),
    or None if none is published."""
    record = family_of_model(model)
    tags = record.tags(model) if record else {}
    return tags.get(tag) if tag else next(iter(tags.values()), None)


def downstream_url(model: str, task: str) -> Optional[str]:
    """URL of the authors' trained detector (``task='coco'``) or segmentor (``'ade20k'``) of
    ``model``, or None."""
    record = family_of_model(model)
    urls = [url for release in (record.releases if record else ()) if (url := release.downstream_url(model, task))]
    return urls[0] if urls else None


def release_urls() -> set:
    """Every file that the families' releases name."""
    return {url for record in _FAMILIES.values() for release in record.releases for url in release.urls()}
