"""How this package's models meet timm's conventions, shared by every family.

* :func:`create_timm_model`: what each family's ``_create_<family>`` helper calls from its
  explicit ``@register_model`` factories: timm's ``build_model_with_cfg`` with the family's
  checkpoint filter as ``pretrained_filter_fn`` (so timm's own loaders read the authors'
  files), and ``features_only`` set up for the family.
* :func:`run_intermediates`: the loop behind each model's ``forward_intermediates``, with
  timm's semantics for ``indices`` (None: all levels, int n: the last n, a sequence:
  those levels, negative from the end) and ``stop_early``.
* :class:`TimmClassifier`: the base of this package's classifiers. A family lists its
  trunk as ordered steps (each a module called on the previous output) and the step that
  ends each feature level; the base class gives timm's ``forward_features`` (with gradient
  checkpointing), ``forward_intermediates`` and ``prune_intermediate_layers`` on them, the
  head API (``forward``, ``get_classifier``, ``reset_classifier``) on the family's
  ``make_head``, and the deploy verb ``switch_to_deploy()`` (``fuse()``, timm's spelling).
* :func:`stage_feature_info`: the feature_info of a four-stage trunk at strides 4 to 32.

Released weights are downloaded by the package's weights part, which registers its fetcher
here (:func:`register_pretrained_fetcher`): the models import nothing from it.
"""
import functools
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
from timm.models import build_model_with_cfg, resolve_pretrained_cfg
from timm.models._features import feature_take_indices
from torch import nn
from torch.utils.checkpoint import checkpoint

from .layers.fusion import fuse_modules
from .multiscale import BackboneConfigError

__all__ = ['TimmClassifier', 'create_timm_model', 'register_pretrained_fetcher', 'run_intermediates',
           'stage_feature_info']

Indices = Optional[Union[int, Sequence[int]]]


def stage_feature_info(dims: Sequence[int]) -> List[dict]:
    """feature_info of modules ``stages.0`` ... at strides 4, 8, 16, 32 with widths ``dims``."""
    return [dict(num_chs=dim, reduction=4 * 2 ** index, module=f'stages.{index}') for index, dim in enumerate(dims)]


def run_steps(x: torch.Tensor, steps: Sequence[nn.Module], grad_checkpointing: bool = False):
    """Yield the output of each of ``steps``, run in order on ``x``; with
    ``grad_checkpointing`` each step's activations are recomputed in the backward pass
    instead of kept (while gradients are being recorded). Steps without parameters (a bare
    activation, possibly in place, between ReXNet-lite's layers) run as they are."""
    checkpointed = grad_checkpointing and torch.is_grad_enabled() and not torch.jit.is_scripting()
    for step in steps:
        if checkpointed and any(True for _ in step.parameters()):
            x = checkpoint(step, x, use_reentrant=False)
        else:
            x = step(x)
        yield x


def run_intermediates(x: torch.Tensor, steps: Sequence[nn.Module], level_ends: Sequence[int],
                      indices: Indices = None, stop_early: bool = False, output_fmt: str = 'NCHW',
                      grad_checkpointing: bool = False) -> Tuple[torch.Tensor, List[torch.Tensor]]:
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
    for position, x in enumerate(run_steps(x, steps[:end], grad_checkpointing)):
        if position in taps:
            intermediates.append(x)
    return x, intermediates


class TimmClassifier(nn.Module):
    """An ImageNet classifier with timm's feature API, over a trunk of ordered steps.

    A subclass sets ``feature_info``, ``num_features``, ``global_pool`` and ``head`` (or
    overrides ``get_classifier`` / ``reset_classifier`` where its head has another name) and
    defines :meth:`trunk_steps`, :meth:`level_ends`, :meth:`keep_steps`, :meth:`make_head`,
    :meth:`group_matcher` and ``forward_head``. No model here has a norm that applies to
    the intermediates (their norms act on pooled features), so ``norm`` changes nothing.
    """

    grad_checkpointing = False

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

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        """timm's parameter groups (layer-wise LR decay): regexes of the stem and the blocks;
        what no pattern matches (the head) is the last group."""
        raise NotImplementedError

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each trunk step's activations in the backward pass instead of keeping them."""
        self.grad_checkpointing = enable

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        for x in run_steps(x, self.trunk_steps(), self.grad_checkpointing):
            pass
        return x

    def switch_to_deploy(self) -> nn.Module:
        """The deploy form, in place: every BN folded into the layer before it (and the
        family's branches collapsed); equal outputs in eval mode. Returns the model."""
        fuse_modules(self)
        return self

    def fuse(self, *args, **kwargs) -> nn.Module:
        """timm's name for :meth:`switch_to_deploy`."""
        return self.switch_to_deploy(*args, **kwargs)

    def forward_intermediates(self, x: torch.Tensor, indices: Indices = None, norm: bool = False,
                              stop_early: bool = False, output_fmt: str = 'NCHW', intermediates_only: bool = False):
        """timm's API: the outputs of feature levels ``indices`` (None: all; int n: the last
        n; a sequence: those, negative from the end), and the final features unless
        ``intermediates_only``."""
        x, intermediates = run_intermediates(x, self.trunk_steps(), self.level_ends(), indices, stop_early,
                                             output_fmt, self.grad_checkpointing)
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


# ---- building a timm model ------------------------------------------------------------
# (name, kwargs) -> kwargs: the weights part registers the checked download of a release here.
_PRETRAINED_FETCHER: Optional[Callable[[str, dict], dict]] = None


def register_pretrained_fetcher(fetch: Callable[[str, dict], dict]) -> None:
    """Let ``fetch(name, kwargs)`` download the release that ``pretrained=True`` loads (into
    timm's cache, pointing timm at the file); without one, timm downloads it itself."""
    global _PRETRAINED_FETCHER
    _PRETRAINED_FETCHER = fetch


def refuse_missing_release(name: str, kwargs: dict) -> None:
    """``pretrained=True`` where no weights are known: timm would only warn and go on with
    random weights, so this says so and stops."""
    cfg = resolve_pretrained_cfg(name, pretrained_cfg=kwargs.get('pretrained_cfg'),
                                 pretrained_cfg_overlay=kwargs.get('pretrained_cfg_overlay'))
    if not (cfg.url or cfg.file or cfg.state_dict or cfg.hf_hub_id):
        raise BackboneConfigError(f'{name} has no released weights: build it with pretrained=False, or load '
                                  'your own with pretrained_cfg_overlay=dict(file=PATH)')


def create_timm_model(family, name: str, pretrained: bool, model_cls: Callable[..., nn.Module],
                      arguments: dict, feature_cfg: Optional[dict] = None, **kwargs) -> nn.Module:
    """Build timm model ``name`` of ``family`` (its :class:`~.registry.Family` record) as
    ``model_cls(**arguments, **kwargs)`` through timm's ``build_model_with_cfg``.

    The family's checkpoint filter is timm's ``pretrained_filter_fn``, so ``pretrained=True``
    and ``pretrained_cfg_overlay=dict(file=...)`` read the authors' files in any of their
    layouts; ``feature_cfg`` is timm's features_only setup (e.g. ``flatten_sequential``,
    default ``out_indices``, ``feature_cls='getter'``).
    """
    if pretrained:
        refuse_missing_release(name, kwargs)
        if _PRETRAINED_FETCHER is not None:
            kwargs = _PRETRAINED_FETCHER(name, kwargs)
    # A partial, so that no model argument can collide with build_model_with_cfg's own
    # (it has a `variant`: the model name).
    build = functools.partial(model_cls, **arguments)
    return build_model_with_cfg(build, name, pretrained, pretrained_filter_fn=family.filter_checkpoint,
                                feature_cfg=dict(feature_cfg or {}), **kwargs)
