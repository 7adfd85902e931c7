"""timm's conventions for every timm model of the project, read from the family records.

For each model: an explicit ``@register_model`` factory in its family file;
``timm.create_model(name, features_only=True, out_indices=...)`` builds, its outputs and
feature_info equal the classifier's own stage outputs (read by forward hooks on the modules
its feature_info names), and so do ``forward_intermediates`` (every ``indices`` form,
``stop_early``) and the model left by ``prune_intermediate_layers``; ``group_matcher`` groups
every parameter, stem first and head last. For each classifier class: gradient
checkpointing gives the same gradients. One odd input size and one even one, small.
"""
import copy
import inspect
import re
import sys

import pytest
import timm
import torch
from timm.models import group_parameters

from conftest import set_reference_weights

from mm_efficient_backbones.backbones import BackboneConfigError
from mm_efficient_backbones.backbones.models import registry

# Every timm model of the project, from the family records.
MODELS = registry.model_names()
INPUTS = [(1, 3, 45, 61), (2, 3, 64, 64)]


@pytest.mark.parametrize('family', registry.families(), ids=lambda record: record.type)
def test_every_model_has_an_explicit_factory_in_its_family_file(family):
    """``grep 'def recnext_m3'`` finds it: one thin ``@register_model`` function per name, in the
    module that declares the family, calling the family's one ``_create_<family>`` helper."""
    module = sys.modules[family.backbone.__module__]
    (helper,) = re.findall(r'^def (_create_\w+)\(', inspect.getsource(module), re.M)
    assert family.models
    for name in family.models:
        factory = timm.models.model_entrypoint(name)
        assert factory is getattr(module, name) and factory.__module__ == module.__name__, name
        code = inspect.getsource(factory)
        assert code.startswith(f'@register_model\ndef {name}(pretrained: bool = False, **kwargs)'), code
        assert f"return {helper}('{name}', pretrained, **kwargs)" in code, code


def stage_outputs(model, x):
    """The outputs of the modules ``model.feature_info`` names, during ``model(x)``."""
    outputs = {}
    hooks = [model.get_submodule(info['module']).register_forward_hook(
        lambda module, inputs, output, index=index: outputs.__setitem__(index, output.clone()))
        for index, info in enumerate(model.feature_info)]
    try:
        model(x)
    finally:
        for hook in hooks:
            hook.remove()
    return [outputs[index] for index in range(len(model.feature_info))]


def same_weights(target, source):
    """Load ``source``'s tensors into ``target`` in state_dict order (the features_only
    extractors rename and drop modules but keep their order); strict, so every tensor of
    ``target`` gets one of matching shape."""
    target.load_state_dict(dict(zip(target.state_dict(), source.state_dict().values())), strict=True)
    return target


def assert_same(got, expected):
    assert len(got) == len(expected)
    for ours, theirs in zip(got, expected):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=0)


@pytest.fixture(scope='module', params=MODELS)
def classifier(request):
    torch.manual_seed(0)
    model = set_reference_weights(timm.create_model(request.param)).eval()
    return request.param, model


@torch.no_grad()
def test_features_only_and_forward_intermediates_give_the_stage_outputs(classifier):
    name, model = classifier
    levels = len(model.feature_info)
    out_indices = (1, levels - 1)
    features = timm.create_model(name, features_only=True, out_indices=out_indices).eval()
    same_weights(features, model)
    assert features.feature_info.channels() == [model.feature_info[i]['num_chs'] for i in out_indices]
    assert features.feature_info.reduction() == [model.feature_info[i]['reduction'] for i in out_indices]
    for shape in INPUTS:
        x = torch.randn(shape)
        stages = stage_outputs(model, x)
        assert [s.shape[1] for s in stages] == [info['num_chs'] for info in model.feature_info]
        assert_same(features(x), [stages[i] for i in out_indices])
        # Every indices form: all (None), the last n (int), a list with a negative index.
        final, everything = model.forward_intermediates(x)
        assert_same(everything, stages)
        torch.testing.assert_close(final, model.forward_features(x), rtol=0, atol=0)
        assert_same(model.forward_intermediates(x, indices=2, intermediates_only=True), stages[-2:])
        # No model has a norm that applies to its intermediates: norm=True changes nothing.
        assert_same(model.forward_intermediates(x, norm=True, intermediates_only=True), stages)
        assert_same(model.forward_intermediates(x, indices=[0, -1], intermediates_only=True),
                    [stages[0], stages[-1]])
        # stop_early ends at the last level taken: the final features are that level's.
        final, taken = model.forward_intermediates(x, indices=[1], stop_early=True)
        assert_same(taken, [stages[1]])
        torch.testing.assert_close(final, stages[1], rtol=0, atol=0)


@torch.no_grad()
def test_prune_intermediate_layers_keeps_the_levels_up_to_the_last_one_asked(classifier):
    name, model = classifier
    pruned = copy.deepcopy(model)
    assert pruned.prune_intermediate_layers([0, 1]) == [0, 1]
    assert sum(p.numel() for p in pruned.parameters()) < sum(p.numel() for p in model.parameters())
    x = torch.randn(INPUTS[0])
    stages = stage_outputs(model, x)
    assert_same(pruned.forward_intermediates(x, indices=[0, 1], intermediates_only=True), stages[:2])
    torch.testing.assert_close(pruned.forward_features(x), stages[1], rtol=0, atol=0)


@pytest.mark.parametrize('indices', [5, [0, 4]])
def test_out_of_range_indices_are_refused(indices):
    model = timm.create_model('recnext_m0')
    with pytest.raises(AssertionError, match='out of range'):
        model.forward_intermediates(torch.randn(1, 3, 32, 32), indices=indices)


def test_nchw_is_the_only_output_format():
    model = timm.create_model('convnext_tiny_2d')
    with pytest.raises(ValueError, match="'NCHW' features only"):
        model.forward_intermediates(torch.randn(1, 3, 32, 32), output_fmt='NHWC')


@pytest.mark.parametrize('name', ['rexnet_090', 'rexnet_220', 'rexnet_lite_100', 'convnext_tiny_1d'])
def test_pretrained_without_a_release_is_refused_in_one_line(name):
    """timm would warn and return random weights; these models have no released weights."""
    with pytest.raises(BackboneConfigError) as error:
        timm.create_model(name, pretrained=True)
    assert str(error.value) == (f'{name} has no released weights: build it with pretrained=False, or load '
                                'your own with pretrained_cfg_overlay=dict(file=PATH)')


def test_pretrained_from_a_local_file_loads_it(tmp_path):
    source = set_reference_weights(timm.create_model('rexnet_090'))
    torch.save(source.state_dict(), tmp_path / 'rexnet_090.pth')
    model = timm.create_model('rexnet_090', pretrained=True,
                              pretrained_cfg_overlay=dict(file=str(tmp_path / 'rexnet_090.pth')))
    for key, value in source.state_dict().items():
        torch.testing.assert_close(model.state_dict()[key], value, rtol=0, atol=0)


def test_group_matcher_groups_every_parameter_stem_first_head_last(classifier):
    """timm's layer-wise LR decay (``param_groups_layer_decay``) reads these groups."""
    name, model = classifier
    for coarse in (True, False):
        groups = group_parameters(model, model.group_matcher(coarse=coarse))
        grouped = [param for params in groups.values() for param in params]
        assert sorted(grouped) == sorted(name for name, _ in model.named_parameters()), name
        ordered = sorted(groups)
        first, last = groups[ordered[0]], groups[ordered[-1]]
        assert model.pretrained_cfg['first_conv'] + '.weight' in first, (name, first)
        head = model.pretrained_cfg['classifier']
        heads = (head,) if isinstance(head, str) else tuple(head)
        assert any(param.startswith(heads) for param in last), (name, last)
        if not coarse:
            assert len(groups) > len(model.feature_info), name  # a group per block


CLASSIFIER_CLASSES = [(record, cls) for record in registry.families() for cls in record.classifiers]


def first_model_of(record, cls) -> str:
    """The first model of ``record`` that builds a ``cls`` (shape-only builds)."""
    for name in record.models:
        with torch.device('meta'):
            if type(timm.create_model(name)) is cls:
                return name
    raise AssertionError(f'{record.type}: no model builds a {cls.__name__}')


@pytest.mark.parametrize('record, cls', CLASSIFIER_CLASSES, ids=[cls.__name__ for _, cls in CLASSIFIER_CLASSES])
def test_gradient_checkpointing_gives_the_same_gradients(record, cls):
    """Per classifier class (what checkpointing touches), on its family's first model of it."""
    name = first_model_of(record, cls)
    torch.manual_seed(0)
    model = set_reference_weights(timm.create_model(name, num_classes=5, drop_rate=0.0, drop_path_rate=0.0)).train()
    x = torch.randn(2, 3, 45, 61)
    gradients = []
    for enable in (False, True):
        model.zero_grad()
        model.set_grad_checkpointing(enable)
        assert model.grad_checkpointing is enable
        torch.manual_seed(1)
        model(x).square().mean().backward()
        gradients.append({key: param.grad.clone() for key, param in model.named_parameters()
                          if param.grad is not None})
    assert gradients[0].keys() == gradients[1].keys() and gradients[0]
    for key, grad in gradients[0].items():
        torch.testing.assert_close(gradients[1][key], grad, rtol=1e-4, atol=1e-6, msg=key)
