"""The family records (backbones/models/registry.py): what a record must hold, and the tables
that derive from the records (mm types, conversion targets, family guessing, specs)."""
import dataclasses

import pytest
import timm
import torch

from mm_efficient_backbones import backbones
from mm_efficient_backbones.backbones.models import registry
from mm_efficient_backbones.backbones.models.specs import SpecError, resolve

FAMILIES = registry.families()


def test_the_derived_tables_are_the_records():
    assert backbones.MM_BACKBONES == {record.type: record.backbone for record in FAMILIES}
    assert backbones.MODEL_TO_BACKBONE == registry.model_to_backbone()
    assert list(backbones.MODEL_TO_BACKBONE) == registry.model_names()
    names = registry.model_names()
    assert len(names) == len(set(names)) == sum(len(record.models) for record in FAMILIES)


@pytest.mark.parametrize('record', FAMILIES, ids=lambda record: record.type)
def test_each_family_is_told_apart_by_its_keys_and_names_its_backbone(record):
    assert record.backbone.family == record.type and dict(record.backbone.archs) == dict(record.archs)
    for name, entry in record.models.items():
        target = registry.backbone_target(name)
        assert (target.backbone_cls, target.arch, target.options) == (record.backbone, entry.arch, dict(entry.options))
        assert registry.family_of_model(name) is record
    name = next(iter(record.models))
    with torch.device('meta'):
        classifier, backbone = timm.create_model(name), registry.backbone_target(name).build()
    assert type(classifier) in record.classifiers
    assert registry.guess_family(classifier.state_dict()) == record.type
    assert registry.guess_family(backbone.state_dict()) == record.type
    assert classifier.switch_to_deploy() is classifier


@pytest.mark.parametrize('record', FAMILIES, ids=lambda record: record.type)
def test_each_spec_of_a_family_resolves_to_its_backbone(record):
    specs = record.specs()
    assert specs == [spec for spec in registry.backbone_specs() if spec.split(':')[0] == record.type]
    for spec in specs:
        resolved = resolve(spec)
        assert resolved.is_backbone and resolved.family is record and resolved.target.backbone_cls is record.backbone
    arch = next(iter(record.archs))
    with pytest.raises(SpecError, match=f"unknown {record.type} arch 'nope'"):
        resolve(f'{record.type}:nope')
    if record.variants:
        with pytest.raises(SpecError, match=f"unknown {record.type} {record.variant_option} 'nope'"):
            resolve(f'{record.type}:{arch}:nope')
    else:
        with pytest.raises(SpecError, match='takes no variant'):
            resolve(f'{record.type}:{arch}:x')


def test_unknown_names_are_one_line_with_the_closest():
    with pytest.raises(SpecError, match="unknown model 'recnext_m9': did you mean recnext_m"):
        resolve('recnext_m9')
    with pytest.raises(SpecError, match="unknown backbone type 'Nope' in 'Nope:m0'"):
        resolve('Nope:m0')
    assert resolve('resnet18', any_timm=True).family is None
    with pytest.raises(SpecError):
        resolve('resnet18')


def test_a_record_that_breaks_the_rules_is_refused(monkeypatch):
    record = registry.family('RecNeXt')
    monkeypatch.setattr(registry, '_FAMILIES', dict(registry._FAMILIES))
    cases = [
        (dataclasses.replace(record, type='Other'), "model 'recnext_m0' is already a RecNeXt model"),
        (dataclasses.replace(record, models={'x_m0': registry.Model('m9')}), "arch 'm9' is not in its arch table"),
        (dataclasses.replace(record, classifiers=(torch.nn.Linear,)), 'classifier Linear lacks'),
        (dataclasses.replace(record, releases=(registry.Release('u/', ('x_m0',), {'in1k': '{model}.pth'}),)),
         r"names unknown models \['x_m0'\]"),
    ]
    for bad, message in cases:
        with pytest.raises(ValueError, match=message):
            registry.register(bad)
    assert registry.family('Other') is None
