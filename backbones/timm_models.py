"""How this package's models meet timm's conventions, shared by every family.

* :func:`register_family`: the one way a family registers its timm models (one factory
  per name, built with timm's ``build_model_with_cfg``, releases fetched through
  :mod:`backbones.hub`), so ``timm.create_model(name, features_only=True, out_indices=...)``
  works for each of them.
* :func:`run_intermediates`: the loop behind each model's ``forward_intermediates``, with
  timm's semantics for ``indices`` (None: all levels, int n: the last n, a sequence:
  those levels, negative from the end) and ``stop_early``.
* :func:`stage_feature_info`: the feature_info of a four-stage trunk at strides 4 to 32.

A family lists its trunk as ordered steps (each a module called on the previous output)
and the step that ends each feature level; ``prune_intermediate_layers`` truncates the
steps after the last level kept, as timm's own models do.
"""
import functools
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
from timm.models import build_model_with_cfg, register_model
from timm.models._features import feature_take_indices
from torch import nn

from .hub import fetch_pretrained

__all__ = ['register_family', 'run_intermediates', 'stage_feature_info', 'feature_take_indices']

Indices = Optional[Union[int, Sequence[int]]]


def stage_feature_info(dims: Sequence[int], module: str = 'stages') -> List[dict]:
    """feature_info of stages ``<module>.0`` ... at strides 4, 8, 16, 32 with widths ``dims``."""
    return [dict(num_chs=dim, reduction=4 * 2 ** index, module=f'{module}.{index}')
            for index, dim in enumerate(dims)]


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
            return build_model_with_cfg(_build, _name, pretrained, feature_cfg=dict(feature_cfg or {}),
                                        **fetch_pretrained(_name, pretrained, kwargs))
        factory.__name__ = factory.__qualname__ = name
        factory.__doc__ = describe(name, arguments)
        factory.__module__ = module
        factories[name] = register_model(factory)
    return factories
