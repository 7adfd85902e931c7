"""The one reading of the model names that the tools take (export, benchmark, erf,
feature_maps): a timm model name (``recnext_m3``), or an mm backbone ``TYPE:ARCH[:VARIANT]``
(``RecNeXt:m3``, ``ConvNeXt1D:tiny:1d``), read against the family records.

:func:`resolve` gives a :class:`ModelSpec`: the family, arch and options it names, what to
build (the classifier or the backbone), and the names of its outputs; :func:`deploy_form`
is the deploy form of any model. Bad names are one-line :class:`SpecError`\\ s.
"""
import copy
import difflib
from dataclasses import dataclass, field
from typing import Any, List, Mapping, Optional

from torch import nn

from ..errors import UserError
from . import registry
from .registry import BackboneTarget, Family

__all__ = ['ModelSpec', 'SpecError', 'deploy_form', 'resolve']


class SpecError(UserError, ValueError):
    """A model name or ``TYPE:ARCH[:VARIANT]`` that names nothing; its message is one line."""


@dataclass(frozen=True)
class ModelSpec:
    """What a model name names. ``model`` is the timm name (None for ``TYPE:ARCH``);
    ``family`` is None for a timm model of no family (e.g. resnet50, where allowed)."""
    spec: str
    family: Optional[Family]
    model: Optional[str] = None
    arch: Optional[str] = None
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def is_backbone(self) -> bool:
        """``TYPE:ARCH``: the mm backbone, whose outputs are its stages."""
        return self.model is None

    @property
    def target(self) -> Optional[BackboneTarget]:
        """The backbone this name builds or converts to (None for a timm model of no family)."""
        return BackboneTarget(self.family.backbone, self.arch, **self.options) if self.family else None

    def build(self, **kwargs) -> nn.Module:
        """The model the name says: the backbone of ``TYPE:ARCH``, else the timm classifier."""
        if self.is_backbone:
            return self.target.build(**kwargs)
        import timm
        return timm.create_model(self.model, **kwargs)

    def output_names(self, model: nn.Module) -> List[str]:
        """The names of ``model``'s outputs: ``stage<i>`` of a backbone, ``logits`` of a classifier."""
        out_indices = getattr(model, 'out_indices', None)
        return [f'stage{index}' for index in out_indices] if out_indices is not None else ['logits']


def _types() -> str:
    return ', '.join(f'{record.type}:ARCH' + (f'[:{record.variant_option.upper()}]' if record.variants else '')
                     for record in registry.families())


def _resolve_backbone(spec: str) -> ModelSpec:
    type_name, arch, *rest = spec.split(':')
    record = registry.family(type_name)
    if record is None:
        raise SpecError(f"unknown backbone type '{type_name}' in '{spec}': use {_types()} (e.g. "
                        f"{registry.families()[0].specs()[0]}), or a timm model name")
    if arch not in record.archs:
        raise SpecError(f"unknown {record.type} arch '{arch}': choose one of {', '.join(record.archs)}")
    if not rest:
        return ModelSpec(spec, record, None, arch)
    if len(rest) > 1 or not record.variants:
        form = f'{record.type}:ARCH' + (f':{record.variant_option.upper()}' if record.variants else '')
        raise SpecError(f"'{spec}' is not {form}: {record.type} takes "
                        + (f'one {record.variant_option}' if record.variants else 'no variant'))
    if rest[0] not in record.variants:
        raise SpecError(f"unknown {record.type} {record.variant_option} '{rest[0]}': choose one of "
                        f"{', '.join(record.variants)}")
    return ModelSpec(spec, record, None, arch, {record.variant_option: rest[0]})


def resolve(spec: str, any_timm: bool = False) -> ModelSpec:
    """Read ``spec``: ``TYPE:ARCH[:VARIANT]``, a timm model of a family, or (``any_timm``) any
    timm model; anything else is a one-line :class:`SpecError` with the closest names."""
    spec = str(spec)
    if ':' in spec:
        return _resolve_backbone(spec)
    record = registry.family_of_model(spec)
    if record is not None:
        entry = record.models[spec]
        return ModelSpec(spec, record, spec, entry.arch, dict(entry.options))
    if any_timm:
        import timm
        if timm.is_model(spec):
            return ModelSpec(spec, None, spec)
    close = difflib.get_close_matches(spec, registry.model_names(), n=3)
    hint = f"did you mean {', '.join(close)}? " if close else ''
    example = f'e.g. {registry.model_names()[0]}' + (', resnet18' if any_timm else '')
    raise SpecError(f"unknown model '{spec}': {hint}give a "
                    + ('timm model name' if any_timm else 'model of this project')
                    + f' ({example}) or an mm backbone as TYPE:ARCH ({_types()})')


def deploy_form(model: nn.Module, copy_first: bool = True) -> nn.Module:
    """``model``'s deploy form in eval mode (of a copy, unless ``copy_first=False``): its
    ``switch_to_deploy()``, which every model and backbone of this package has (RepNeXt at
    level 1), or the model itself for a timm model of no family."""
    if copy_first:
        model = copy.deepcopy(model)
    switch = getattr(model, 'switch_to_deploy', None)
    return (switch() if callable(switch) else model).eval()
