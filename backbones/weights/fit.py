"""Does this state_dict fit the model? The one answer (:func:`plan_fit`, :class:`Fit`) and its
one-line refusal (:func:`check_fit`), behind ``init_cfg``, convert_to_backbone_weights,
export's ``--checkpoint``, reparameterize and the mm tools' checkpoint check; and which
arch of a family fits a file's shapes (:func:`fitting_arch`). No mm imports.
"""
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import nn

from ..errors import CheckpointError, UserError
from ..models.registry import family_of_model, guess_family
from .checkpoint import load_checkpoint_file, under_prefix, unwrap_state_dict

StateDict = Dict[str, torch.Tensor]


class ConversionError(CheckpointError):
    """A checkpoint that cannot become the requested model; its message is one line."""


# ---- 5. fit: kernel cropping ---------------------------------------------------------
def centre_crop_window(source_shape: Sequence[int], target_shape: Sequence[int]):
    """Index that centre-crops a conv weight's kernel dims to ``target_shape``, or None.

    Conv weights are (out, in/groups, *kernel). Cropping explains a mismatch only when
    out and in agree and every kernel dim that differs is odd on both sides and larger
    in the source, so the centre tap stays the centre tap.
    """
    source_shape, target_shape = tuple(source_shape), tuple(target_shape)
    if len(source_shape) < 3 or len(source_shape) != len(target_shape):
        return None
    if source_shape[:2] != target_shape[:2] or source_shape == target_shape:
        return None
    window = [slice(None), slice(None)]
    for have, want in zip(source_shape[2:], target_shape[2:]):
        if have == want:
            window.append(slice(None))
        elif have > want and have % 2 == 1 and want % 2 == 1:
            start = (have - want) // 2
            window.append(slice(start, start + want))
        else:
            return None
    return tuple(window)


def norm_fraction_removed(full: torch.Tensor, cropped: torch.Tensor) -> float:
    """1 - |cropped| / |full| (L2 norms): how much of the weight's norm the crop removed."""
    full_norm = full.double().norm().item()
    return 0.0 if full_norm == 0 else 1.0 - cropped.double().norm().item() / full_norm


def describe_shape(shape) -> str:
    return 'x'.join(map(str, shape))


@dataclass
class Crop:
    key: str
    source_shape: Tuple[int, ...]
    target_shape: Tuple[int, ...]
    norm_removed: float = 0.0

    def describe(self) -> str:
        return (f'{self.key} {describe_shape(self.source_shape)} -> {describe_shape(self.target_shape)}: '
                f'{100 * self.norm_removed:.1f}% of the L2 norm removed')


# ---- 5. fit: the check -----------------------------------------------------------------
@dataclass
class Fit:
    """How a (selected, dropped, mapped) state_dict compares with the backbone's."""

    crops: Dict[str, tuple] = field(default_factory=dict)  # key -> crop window
    unexplained: List[tuple] = field(default_factory=list)  # (key, checkpoint, backbone shape)
    missing: List[str] = field(default_factory=list)
    unexpected: List[str] = field(default_factory=list)
    filled: List[str] = field(default_factory=list)  # BN counters taken from the backbone
    initial: List[str] = field(default_factory=list)  # backbone-only tensors, at their init
    exact: List[str] = field(default_factory=list)  # keys of both with the same shape
    matched: int = 0

    @property
    def ok(self) -> bool:
        return not (self.unexplained or self.missing or self.unexpected)


def _shape_of(value) -> Tuple[int, ...]:
    return tuple(value.shape) if hasattr(value, 'shape') else tuple(value)


def plan_fit(state_dict: Mapping[str, Any], model_state: Mapping[str, Any], crop_kernels: bool = False,
             backbone_only_prefixes: Sequence[str] = ()) -> Fit:
    """How ``state_dict`` (a checkpoint's tensors, or their shapes) fits ``model_state`` (the
    model's): the one check behind init_cfg, the converter, export's ``--checkpoint`` and the
    mm tools' checkpoint check. ``crop_kernels``: larger odd kernels are centre-cropped;
    ``backbone_only_prefixes``: modules the checkpoint need not have (kept at their init)."""
    fit = Fit()
    for key, value in state_dict.items():
        if key not in model_state:
            fit.unexpected.append(key)
            continue
        fit.matched += 1
        got, want = _shape_of(value), _shape_of(model_state[key])
        if got == want:
            fit.exact.append(key)
            continue
        window = centre_crop_window(got, want) if crop_kernels and key.endswith('weight') else None
        if window is None:
            fit.unexplained.append((key, got, want))
        else:
            fit.crops[key] = window
    for key in model_state:
        if key not in state_dict:
            # BN step counters are not weights; several releases omit them.
            if key.endswith('num_batches_tracked'):
                fit.filled.append(key)
            elif under_prefix(key, backbone_only_prefixes):
                fit.initial.append(key)
            else:
                fit.missing.append(key)
    return fit


def describe_shape_mismatch(mismatches, where: str, hint: Optional[str] = None) -> str:
    key, got, want = mismatches[0]
    more = f' (and {len(mismatches) - 1} more)' if len(mismatches) > 1 else ''
    hint = f'; {hint}' if hint else ''
    return f'{where}: {key} has shape {got} in the checkpoint but {want} in the model{more}{hint}'


def check_fit(fit: Fit, family: Optional[str], source: str, source_keys: Sequence[str], name: str,
              other_family: Optional[Callable[[str], str]] = None, cause: Optional[str] = None) -> None:
    """Raise the most telling one-line error when the checkpoint does not fit.

    ``family`` is the model's family type; ``name`` is the model as the user knows it
    (``RecNeXt-m0``, ``recnext_m0 backbone``);
    ``other_family(family)`` says what to do with a checkpoint of another family;
    ``cause`` is the family's own diagnosis of this misfit, where it recognises one.
    """
    if fit.ok:
        return
    found = guess_family(source_keys)
    if found and found != family:
        advice = other_family(found) if other_family else f" ({name}); load it into type='{found}'"
        raise ConversionError(f'{source} looks like a {found} checkpoint, not {family}{advice}')
    if fit.matched == 0:
        raise ConversionError(f'{source}: no keys match {name}; pass a {family} classifier or '
                              'backbone checkpoint')
    problems = []
    if fit.missing:
        problems.append(f'{len(fit.missing)} {name} tensors are missing from the checkpoint '
                        f'(e.g. {fit.missing[0]})')
    if fit.unexpected:
        problems.append(f'{len(fit.unexpected)} checkpoint tensors are not in the {name} '
                        f'(e.g. {fit.unexpected[0]})')
    if cause:
        raise ConversionError(f'{source}: {"; ".join(problems) or "shapes differ"}: {cause}')
    arch_hint = f'is it a checkpoint of another {family} arch?'
    if fit.unexplained:
        raise ConversionError(describe_shape_mismatch(
            fit.unexplained, f'{source}: shape mismatch that cropping cannot explain', hint=arch_hint))
    raise ConversionError(f'{source}: {"; ".join(problems)}; {arch_hint}')


def apply_fit(state_dict: StateDict, model_state: StateDict, fit: Fit) -> Tuple[StateDict, List[Crop]]:
    """The backbone's state_dict in its own key order, cropped and completed."""
    crops, out = [], OrderedDict()
    filled = set(fit.filled) | set(fit.initial)
    for key, reference in model_state.items():
        if key in filled:
            out[key] = reference.clone()
            continue
        value = state_dict[key]
        if key in fit.crops:
            # clone: a view would make torch.save write the whole uncropped storage.
            cropped = value[fit.crops[key]].clone()
            crops.append(Crop(key, tuple(value.shape), tuple(cropped.shape),
                              norm_fraction_removed(value, cropped)))
            value = cropped
        out[key] = value
    return out, crops


# ---- shapes -----------------------------------------------------------------------------
def module_shapes(build: Callable[[], nn.Module]) -> Dict[str, Tuple[int, ...]]:
    """{key: shape} of the module ``build()`` makes: on the meta device (no memory, no init)
    where the module allows it, else on the CPU."""
    try:
        with torch.device('meta'):
            module = build()
    except Exception:  # noqa: BLE001  some modules compute values while building; the CPU build says why
        module = build()
    return OrderedDict((k, tuple(v.shape)) for k, v in module.state_dict().items())


def fitting_arch(backbone_cls: type, shapes: Mapping[str, Any], exact: bool = True, **options) -> Optional[str]:
    """The arch of ``backbone_cls`` (built with ``options``) whose state has exactly ``shapes``
    (``exact=False``: whose state holds every key of ``shapes`` with its shape), or None."""
    shapes = {key: _shape_of(value) for key, value in shapes.items()}
    for arch in backbone_cls.archs:
        try:
            model = module_shapes(lambda: backbone_cls(arch, **options))
        except (UserError, TypeError, ValueError, KeyError):
            continue
        if model == shapes if exact else model.keys() >= shapes.keys() and all(
                model[key] == shape for key, shape in shapes.items()):
            return arch
    return None


# ---- a classifier checkpoint, strictly ----------------------------------------------------
def load_classifier_checkpoint(model: nn.Module, name: str, path: str,
                               trust_hint: str = 'convert it once with convert_to_backbone_weights '
                                                 '--trust-checkpoint') -> None:
    """Load a classifier file into timm model ``name`` (``model``) only if it fits: every key,
    every shape, after the family's checkpoint filter (the authors' layouts), as timm's
    ``pretrained_filter_fn`` reads it; one line otherwise."""
    state_dict, _ = unwrap_state_dict(load_checkpoint_file(path, trust_hint=trust_hint))
    record = family_of_model(name)
    source_keys = list(state_dict)
    if record is not None:
        state_dict = record.filter_checkpoint(state_dict, model)
    fit = plan_fit(state_dict, model.state_dict())
    check_fit(fit, record.type if record else None, path, source_keys, name)
    model.load_state_dict(state_dict, strict=False)  # strict in effect: the fit is complete
