"""How this package's models meet timm's conventions, shared by every family.

* :func:`register_family`: the one way a family registers its timm models (one factory
  per name, built with timm's ``build_model_with_cfg``, releases fetched through
  :mod:`backbones.hub`), so ``timm.create_model(name, features_only=True, out_indices=...)``
  works for each of them.
* :func:`run_intermediates`: the loop behind each model's ``forward_intermediates``, with
  timm's semantics for ``indices`` (None: all levels, int n: the last n, a sequence:
  those levels, negative from the end) and ``stop_early``.
* :class:`TimmClassifier`: the base of this package's classifiers. A family lists its
  trunk as ordered steps (each a module called on the previous output) and the step that
  ends each feature level; the base class gives timm's ``forward_intermediates`` and
  ``prune_intermediate_layers`` on them, and the head API (``forward``, ``get_classifier``,
  ``reset_classifier``) on the family's ``make_head``.
* :func:`stage_feature_info`: the feature_info of a four-stage trunk at strides 4 to 32.
"""
import functools
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
from timm.models import build_model_with_cfg, register_model, resolve_pretrained_cfg
from timm.models._features import feature_take_indices
from torch import nn

from .hub import fetch_pretrained
from .multiscale import BackboneConfigError

__all__ = ['TimmClassifier', 'register_family', 'run_intermediates', 'stage_feature_info']

Indices = Optional[Union[int, Sequence[int]]]


def stage_feature_info(dims: Sequence[int]) -> List[dict]:
    """feature_info of modules ``stages.0`` ... at strides 4, 8, 16, 32 with widths ``dims``."""
    return [dict(num_chs=dim, reduction=4 * 2 ** index, module=f'stages.{index}') for index, dim in enumerate(dims)]


def run_intermediates(x: torch.Tensor, steps: Sequence[nn.Module], level_ends: Sequence[int],
                      indices: Indices = None, stop_early: bool = False, output_fmt: str = 'NCHW'
                      ) -> Tuple[torch.Tensor, List[torch.Tensor]]:
    """Run ``steps`` in order; return the last output and the outputs of the levels taken.

    ``level_ends[i]`` is the position in ``steps`` whose output is feature level ``i``.
    With ``stop_early`` the steps after the last level taken are skipped (the returned
    final features are then that level's), as in timm's own models.
    """
    if output_fmt != 'NCHW':
        raise ValueError(f"output_fmt={output_fmt!r}: these models give 'NCHW' features only")
    take, last = feature_take_indices(len(level_ends), indices)
    taps = {level_ends[index] for index in take}
    # Steps after the deepest level (ReXNet's final 1x1 conv) belong to the final features:
    # they run unless an earlier level is the last one wanted.
    end = level_ends[last] + 1 if stop_early and last < len(level_ends) - 1 else len(steps)
    intermediates = []
    for position, step in enumerate(steps[:end]):
        x = step(x)
        if position in taps:
            intermediates.append(x)
    return x, intermediates


class TimmClassifier(nn.Module):
    """An ImageNet classifier with timm's feature API, over a trunk of ordered steps.

    A subclass sets ``feature_info``, ``num_features``, ``global_pool`` and ``head`` (or
    overrides ``get_classifier`` / ``reset_classifier`` where its head has another name) and
    defines :meth:`trunk_steps`, :meth:`level_ends`, :meth:`keep_steps`, :meth:`make_head`,
    ``forward_features`` and ``forward_head``. No model here has a norm that applies to
    the intermediates (their norms act on pooled features), so ``norm`` changes nothing.
    """

    def trunk_steps(self) -> Sequence[nn.Module]:
        """The trunk's modules in forward order, each called on the previous output."""
        raise NotImplementedError

    def level_ends(self) -> Sequence[int]:
        """For each feature level (``feature_info`` entry), the step that outputs it."""
        raise NotImplementedError

    def keep_steps(self, count: int) -> None:
        """Truncate the trunk to its first ``count`` steps."""
        raise NotImplementedError

    def make_head(self, num_classes: int) -> nn.Module:
        """The classifier on ``num_features`` pooled channels (Identity for 0 classes)."""
        raise NotImplementedError

    def forward_intermediates(self, x: torch.Tensor, indices: Indices = None, norm: bool = False,
                              stop_early: bool = False, output_fmt: str = 'NCHW', intermediates_only: bool = False):
        """timm's API: the outputs of feature levels ``indices`` (None: all; int n: the last
        n; a sequence: those, negative from the end), and the final features unless
        ``intermediates_only``."""
        x, intermediates = run_intermediates(x, self.trunk_steps(), self.level_ends(), indices, stop_early,
                                             output_fmt)
        return intermediates if intermediates_only else (x, intermediates)

    def prune_intermediate_layers(self, indices: Indices = 1, prune_norm: bool = False, prune_head: bool = True
                                  ) -> List[int]:
        """Drop the steps after the last level in ``indices``, and the head (sized for the
        final features); returns the level indices kept, as timm's models do."""
        ends = self.level_ends()
        take, last = feature_take_indices(len(ends), indices)
        if not (prune_norm or prune_head or last < len(ends) - 1):
            return take
        self.keep_steps(ends[last] + 1)
        self.num_features = self.head_hidden_size = self.feature_info[last]['num_chs']
        self.drop_head()
        return take

    def drop_head(self) -> None:
        """What pruning does to the head: no classifier, no pooling (unpooled features out)."""
        self.reset_classifier(0, '')

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        self.num_classes = num_classes
        if global_pool is not None:
            self.global_pool = global_pool
        self.head = self.make_head(num_classes)


def refuse_missing_release(name: str, kwargs: dict) -> None:
    """``pretrained=True`` where no weights are known: timm would only warn and go on with
    random weights, so this says so and stops."""
    cfg = resolve_pretrained_cfg(name, pretrained_cfg=kwargs.get('pretrained_cfg'),
                                 pretrained_cfg_overlay=kwargs.get('pretrained_cfg_overlay'))
    if not (cfg.url or cfg.file or cfg.state_dict or cfg.hf_hub_id):
        raise BackboneConfigError(f'{name} has no released weights: build it with pretrained=False, or load '
                                  'your own with pretrained_cfg_overlay=dict(file=PATH)')


def register_family(model_cls: Callable[..., nn.Module], models: Dict[str, dict], module: str,
                    describe: Callable[[str, dict], str], feature_cfg: Optional[dict] = None
                    ) -> Dict[str, Callable[..., nn.Module]]:
    """Register a timm factory per ``models`` entry: model name -> ``model_cls`` arguments.

    ``module`` (the caller's ``__name__``) must define ``default_cfgs`` holding each name
    (timm looks them up there); ``feature_cfg`` is timm's features_only setup (e.g.
    ``flatten_sequential``, default ``out_indices``, ``feature_cls='getter'``);
    ``describe(name, arguments)`` gives each factory's docstring. Returns the factories by
    name, for the module's globals.
    """
    factories = {}
    for name, arguments in models.items():
        # A partial, so that no model argument can collide with build_model_with_cfg's own
        # (it has a `variant`: the model name).
        build = functools.partial(model_cls, **arguments)

        def factory(pretrained: bool = False, _name: str = name, _build=build, **kwargs) -> nn.Module:
            if pretrained:
                refuse_missing_release(_name, kwargs)
            return build_model_with_cfg(_build, _name, pretrained, feature_cfg=dict(feature_cfg or {}),
                                        **fetch_pretrained(_name, pretrained, kwargs))
        factory.__name__ = factory.__qualname__ = name
        factory.__doc__ = describe(name, arguments)
        factory.__module__ = module
        factories[name] = register_model(factory)
    return factories
