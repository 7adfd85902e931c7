"""The checkpoint pipeline: a published file -> the complete weights of one backbone.

``init_cfg=dict(type='Pretrained')`` (:meth:`MultiScaleBackbone.load_pretrained`) and
convert_to_backbone_weights (:func:`convert_checkpoint`) run the same steps:

1. read: a path, or an http(s) URL fetched once into the hub cache; loaded with
   ``weights_only=True``; the weights found in any wrapper (``model``, ``state_dict``,
   ``model_ema``, ``module``, a raw state_dict; ``module.`` stripped), see :mod:`.checkpoint`;
2. select: a detector's or segmentor's ``backbone.`` keys (``prefix``, written with or
   without the dot as mmengine's ``Pretrained`` takes it);
3. drop: the classifier-only tensors (the family's ``classifier_prefixes``);
4. map: the authors' key spellings onto the backbone's (``remap_classifier_keys``: clovaai's
   ReXNet, Oriented1D's ``Wrapper(conv)`` layout, timm's flattened containers);
5. fit: against the backbone's own state. Larger odd kernels are centre-cropped where the
   family allows it (``crop_classifier_kernels``), BN step counters and backbone-only
   modules (``backbone_only_prefixes``) keep the backbone's values; anything else that
   does not fit is refused in one line, naming the likely cause where the family knows it.

The converter then collapses the weights into the deploy form if asked
(:func:`reparameterize_state_dict`), writes them atomically with the source's sha256
(:func:`write_atomically`) and verifies the file before it lands. No mm imports.
"""
import difflib
import logging
import os
import re
from collections import Counter, OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch

from ..errors import CheckpointError, UserError
from ..models.registry import BackboneTarget, family
from .checkpoint import DETECTOR_PREFIX, load_checkpoint_file, split_keys, unwrap_state_dict
from .files import atomic_write, sha256_of
from .fit import ConversionError, Crop, Fit, apply_fit, check_fit, describe_shape, plan_fit
from .hub import MISSING_PRETRAINED_HINT, download

logger = logging.getLogger('backbones')

StateDict = Dict[str, torch.Tensor]
# The wrapper keys holding EMA weights that unwrap_state_dict(prefer_ema=True) picks.
EMA_WRAPPERS = ('model_ema',)
VERIFY_INPUT_SIZE = (64, 64)  # a smoke test: stride 32 still leaves a 2x2 map, and it stays quick
DEPLOY_CHECK_INPUT_SIZE = (67, 93)  # odd sizes: every stride-2 conv rounds up somewhere
DEPLOY_TOLERANCE = 1e-4
CONVERTER = 'convert_to_backbone_weights'


class UnknownModelError(UserError, ValueError):
    """A model name that no backbone converts to; its message is one line."""


@dataclass(frozen=True)
class FamilyRules:
    """How one family's checkpoints become backbone weights, read from its backbone class
    (a ``MultiScaleBackbone``, which holds the defaults); a family plugs in by overriding:

    * ``classifier_prefixes``: top-level key prefixes, in the checkpoint's layout, that
      only the classifier has (``head``, a final ``norm`` the backbone lacks, ...);
    * ``remap_classifier_keys(state_dict) -> state_dict``: the authors' layouts -> the
      backbone's (identity by default);
    * ``crop_classifier_kernels = True``: the backbone uses smaller kernels than the
      classifier, so larger odd kernels are centre-cropped;
    * ``backbone_only_prefixes``: modules only the backbone has (ConvNeXt's output norms),
      kept at the backbone's initial values.
    """

    family: str
    classifier_prefixes: Tuple[str, ...]
    remap_keys: Callable[[StateDict], StateDict]
    crop_kernels: bool
    backbone_only_prefixes: Tuple[str, ...] = ()

    @classmethod
    def of(cls, backbone_cls) -> 'FamilyRules':
        return cls(family=backbone_cls.family,
                   classifier_prefixes=tuple(backbone_cls.classifier_prefixes),
                   remap_keys=backbone_cls.remap_classifier_keys,
                   crop_kernels=bool(backbone_cls.crop_classifier_kernels),
                   backbone_only_prefixes=tuple(backbone_cls.backbone_only_prefixes))


# ---- reporting -----------------------------------------------------------------------
class Report:
    """Where the pipeline says what it did, step by step. Silent here; the converter's
    command line prints it, ``init_cfg`` logs a summary instead."""

    def start(self, steps: Sequence[str]) -> None:
        pass

    def done(self, step: str, message: str) -> None:
        pass

    def detail(self, message: str) -> None:
        pass

    def warn(self, message: str) -> None:
        pass


SILENT = Report()


# ---- 1. read -------------------------------------------------------------------------
def resolve_checkpoint(location, missing_hint: Optional[str] = MISSING_PRETRAINED_HINT) -> str:
    """A local path or an http(s) URL (downloaded once into the hub cache) -> a local file."""
    location = str(location)
    if re.match(r'https?://', location):
        return download(location)
    if not os.path.isfile(location):
        raise CheckpointError(f'checkpoint not found: {location}' + (f' ({missing_hint})' if missing_hint else ''))
    return location


@dataclass
class Source:
    """The weights found in one checkpoint file."""

    path: str
    state_dict: StateDict
    wrapper: str
    sha256: Optional[str] = None


def read_weights(location, prefer_ema: bool = False, trust: bool = False, with_sha256: bool = False,
                 trust_hint: str = f'convert it once with {CONVERTER} --trust-checkpoint',
                 missing_hint: Optional[str] = MISSING_PRETRAINED_HINT, report: Report = SILENT) -> Source:
    """Steps ``load`` and ``unwrap``: the file's weights, wherever the wrapper keeps them."""
    path = resolve_checkpoint(location, missing_hint)
    checkpoint = load_checkpoint_file(path, trust=trust, trust_hint=trust_hint)
    digest = sha256_of(path) if with_sha256 else None
    size = f'{os.path.getsize(path) / 2 ** 20:.1f} MB'
    report.done('load', f'{path} ({size}' + (f', sha256 {digest[:12]})' if digest else ')'))
    state_dict, wrapper = unwrap_state_dict(checkpoint, prefer_ema=prefer_ema)
    message = f'weights from a {wrapper[1:-1]}' if wrapper.startswith('<') else f"weights from '{wrapper}'"
    unused_ema = [key for key in EMA_WRAPPERS if key != wrapper and isinstance(checkpoint.get(key), dict)]
    if prefer_ema and wrapper not in EMA_WRAPPERS:
        report.warn(f"--ema given but the checkpoint has no EMA weights ({', '.join(EMA_WRAPPERS)}); "
                    f"using '{wrapper}'")
    elif unused_ema and wrapper not in EMA_WRAPPERS:
        message += f" ('{unused_ema[0]}' also present: --ema uses it)"
    report.done('unwrap', f'{message}, {len(state_dict)} tensors')
    return Source(path, state_dict, wrapper, digest)


# ---- 2. select -----------------------------------------------------------------------
def select_prefix(state_dict: StateDict, prefix: Optional[str], source: str) -> Tuple[StateDict, Optional[str]]:
    """The keys under ``prefix`` with it removed; ``'backbone'`` and ``'backbone.'`` alike, as
    mmengine's ``Pretrained`` reads it. Without a prefix, a detector's ``backbone.`` keys are
    taken where there are any."""
    if prefix is None:
        if not any(k.startswith(DETECTOR_PREFIX) for k in state_dict):
            return state_dict, None
        prefix = DETECTOR_PREFIX
    elif not prefix.endswith('.'):
        prefix += '.'
    selected = OrderedDict((k[len(prefix):], v) for k, v in state_dict.items() if k.startswith(prefix))
    if not selected:
        raise CheckpointError(f"{source}: no key starts with the prefix '{prefix}': give the prefix its "
                              "modules have in the file, or none for a backbone checkpoint")
    return selected, prefix


# ---- steps 2-5 together ----------------------------------------------------------------
@dataclass
class BackboneWeights:
    """A checkpoint fitted to one backbone: its complete state_dict, and how it was made."""

    state_dict: StateDict  # the backbone's keys, in its order
    source: Source
    prefix: Optional[str]
    dropped: Dict[str, List[str]]  # classifier prefix -> its dropped keys
    renamed: int
    fit: Fit
    crops: List[Crop]

    def dropped_groups(self) -> Dict[str, int]:
        """Tensor counts per dropped module: ``head.head`` and ``head.head_dist`` apart."""
        counts = Counter()
        for prefix, keys in self.dropped.items():
            for key in keys:
                rest = key[len(prefix) + 1:].split('.')
                counts[f'{prefix}.{rest[0]}' if len(rest) > 1 else prefix] += 1
        return dict(counts)


def fit_weights(source: Source, backbone, name: str, prefix: Optional[str] = None,
                other_family: Optional[Callable[[str], str]] = None,
                report: Report = SILENT) -> BackboneWeights:
    """Steps ``drop``, ``map`` and ``crop``: ``source``'s weights as ``backbone``'s complete
    state_dict, or a one-line :class:`ConversionError` when they do not fit it."""
    rules = FamilyRules.of(type(backbone))
    state_dict, prefix = select_prefix(source.state_dict, prefix, source.path)
    source_keys = list(state_dict)
    state_dict, dropped = split_keys(state_dict, rules.classifier_prefixes)
    weights = BackboneWeights({}, source, prefix, dropped, 0, Fit(), [])
    report.done('drop', ', '.join(f'{group}: {n} tensors' for group, n in weights.dropped_groups().items())
                or 'no classifier-only tensors')
    before = set(state_dict)
    state_dict = rules.remap_keys(state_dict)
    weights.renamed = len(set(state_dict) - before)
    # A backbone that can load another form than its own (a deploy RepNeXt given
    # training-form weights) switches to it before the fit.
    backbone.match_checkpoint_form(state_dict)
    model_state = backbone.state_dict()
    fit = weights.fit = plan_fit(state_dict, model_state, rules.crop_kernels, rules.backbone_only_prefixes)
    cause = None if fit.ok else backbone.explain_misfit(state_dict)
    check_fit(fit, rules.family, source.path, source_keys, name, other_family, cause)
    layout = f'renamed {weights.renamed} keys' if weights.renamed else 'keys already in the backbone layout'
    filled = f', {len(fit.filled)} BN counters filled in' if fit.filled else ''
    if fit.initial:
        modules = sorted({key.split('.')[0] for key in fit.initial})
        filled += f', {len(fit.initial)} backbone-only tensors ({", ".join(modules)}) at their initial values'
    report.done('map', f'{layout}; {fit.matched}/{len(model_state)} {name} tensors found{filled}')
    weights.state_dict, weights.crops = apply_fit(state_dict, model_state, fit)
    if weights.crops:
        mean = sum(c.norm_removed for c in weights.crops) / len(weights.crops)
        report.done('crop', f'{len(weights.crops)} kernels centre-cropped, {100 * mean:.1f}% of the '
                            'L2 norm removed on average')
        for crop in weights.crops:
            report.detail(crop.describe())
    else:
        report.done('crop', 'no kernels to crop')
    return weights


def load_backbone_weights(location, backbone, prefix: Optional[str] = None) -> BackboneWeights:
    """What ``init_cfg=dict(type='Pretrained', checkpoint=location, prefix=prefix)`` loads."""
    source = read_weights(location)
    return fit_weights(source, backbone, f'{backbone.family}-{backbone.arch}', prefix=prefix)


def load_pretrained(backbone, checkpoint: str, prefix: Optional[str] = None) -> dict:
    """``backbone.load_pretrained(checkpoint, prefix)`` (registered with the models by this
    part): a classifier, backbone or detector checkpoint through the pipeline, loaded
    strictly, the result logged in one line; returns what was loaded."""
    weights = load_backbone_weights(checkpoint, backbone, prefix=prefix)
    result = backbone.load_state_dict(weights.state_dict, strict=True)
    fit, name = weights.fit, f'{backbone.family}-{backbone.arch}'
    logger.info(f'{name}: loaded {fit.matched} tensors from {weights.source.path} [{weights.source.wrapper}]; '
                f'dropped classifier keys: {sum(map(len, weights.dropped.values()))}'
                + (f'; kernels centre-cropped: {len(weights.crops)}' if weights.crops else '')
                + (f'; backbone-only tensors at their initial values: {len(fit.initial)}' if fit.initial else ''))
    kept = set(fit.filled) | set(fit.initial)
    return dict(loaded=[k for k in weights.state_dict if k not in kept], missing=list(result.missing_keys),
                unexpected=list(result.unexpected_keys),
                dropped=weights.dropped, cropped=[c.key for c in weights.crops], initial=list(fit.initial),
                wrapper=weights.source.wrapper, prefix=weights.prefix)


# ---- deploy form ------------------------------------------------------------------------
def _relative_error(want: Sequence[torch.Tensor], got: Sequence[torch.Tensor]) -> float:
    return max(((a - b).abs().max() / a.abs().max().clamp_min(1e-12)).item() for a, b in zip(want, got))


@torch.no_grad()
def reparameterize_state_dict(build: Callable[..., torch.nn.Module], state_dict: StateDict,
                              source: str) -> Tuple[StateDict, float]:
    """Training-form backbone weights -> the deploy form's, checked: the deploy backbone
    built directly (``build(deploy=True)``) must give the training form's features within
    :data:`DEPLOY_TOLERANCE` (relative). Returns the weights and that error."""
    trained = build()
    record = family(trained.family)
    if record is None or not record.deploy_state:
        raise ConversionError(f'{trained.family} has no separate deploy form to write: its deploy=True '
                              'backbone loads the training weights and folds BN itself')
    trained.load_state_dict(state_dict, strict=True)
    trained.eval()
    x = torch.randn(1, trained.in_channels, *DEPLOY_CHECK_INPUT_SIZE, generator=torch.Generator().manual_seed(0))
    want = trained(x)
    deploy_state = trained.switch_to_deploy().state_dict()
    built = build(deploy=True)
    name = f'{built.family}-{built.arch}'
    built.load_state_dict(deploy_state, strict=True)
    error = _relative_error(want, built.eval()(x))
    if not error <= DEPLOY_TOLERANCE:
        raise ConversionError(f'{source}: the deploy form of {name} differs from the training form by '
                              f'{error:.2e} (relative), over {DEPLOY_TOLERANCE:g}')
    return deploy_state, error


# ---- writing ---------------------------------------------------------------------------
def check_output_path(path: Path, force: bool) -> Path:
    """Fail before the slow steps when ``path`` cannot or must not be written."""
    path = Path(path)
    if path.is_dir():
        raise ConversionError(f'{path} is a directory')
    if path.exists() and not force:
        raise ConversionError(f'{path} already exists; pass --force to overwrite it')
    return path


def write_atomically(payload: dict, path: Path, check: Optional[Callable[[Path], None]] = None) -> None:
    """``torch.save(payload)`` to ``path`` through a temp file, synced; ``check(temp)`` runs
    before the move, so a file that fails it never lands."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path) as temp:
            with open(temp, 'wb') as f:
                torch.save(payload, f)
            if check is not None:
                check(temp)
    except OSError as err:
        raise ConversionError(f'cannot write {path}: {err}') from None


def verify(path: Path, backbone: torch.nn.Module) -> str:
    """Strict load into the backbone and one forward pass; returns a one-line summary."""
    state_dict = load_checkpoint_file(str(path))['state_dict']
    try:
        backbone.load_state_dict(state_dict, strict=True)
    except RuntimeError as err:
        detail = ' '.join(line.strip() for line in str(err).splitlines()[1:])
        raise ConversionError(f'verify failed: strict load into the backbone: {detail}') from None
    backbone.eval()
    with torch.no_grad():
        features = backbone(torch.randn(1, backbone.in_channels, *VERIFY_INPUT_SIZE))
    bad = [i for i, f in enumerate(features) if not torch.isfinite(f).all()]
    if bad:
        raise ConversionError(f'verify failed: non-finite features at output {bad[0]} '
                              f'for a random {describe_shape(VERIFY_INPUT_SIZE)} image')
    return 'features ' + ', '.join(describe_shape(f.shape[1:]) for f in features)


# ---- the converter ---------------------------------------------------------------------
def resolve_target(model: str, targets: Dict[str, BackboneTarget]) -> BackboneTarget:
    if model not in targets:
        close = difflib.get_close_matches(model, targets, n=3)
        hint = f"did you mean {', '.join(close)}? " if close else ''
        raise UnknownModelError(f"unknown model '{model}': {hint}choose one of {', '.join(targets)}")
    return targets[model]


def conversion_steps(deploy: bool = False, verify: bool = False) -> List[str]:
    return (['load', 'unwrap', 'drop', 'map', 'crop'] + (['deploy'] if deploy else [])
            + ['write'] + (['verify'] if verify else []))


@dataclass
class Conversion:
    path: Path
    tensors: int
    cropped: int


def convert_checkpoint(model: str, checkpoint, output_dir, targets: Dict[str, BackboneTarget],
                       prefer_ema: bool = False, deploy: bool = False, verify_output: bool = False,
                       force: bool = False, trust: bool = False, report: Report = SILENT) -> Conversion:
    """A classifier (or backbone) checkpoint -> ``OUTPUT_DIR/<model>_backbone[_deploy].pth``,
    ``{'state_dict', 'meta'}``; ``targets`` maps model names to backbones
    (``backbones.MODEL_TO_BACKBONE``). Raises one-line errors on bad input."""
    target = resolve_target(model, targets)
    report.start(conversion_steps(deploy, verify_output))
    out_path = check_output_path(Path(output_dir) / f'{model}_backbone{"_deploy" if deploy else ""}.pth',
                                 force)  # before the slow steps: fail fast
    source = read_weights(checkpoint, prefer_ema=prefer_ema, trust=trust, with_sha256=True,
                          trust_hint='if you trust its source, pass --trust-checkpoint', missing_hint=None,
                          report=report)
    backbone = target.build()

    def other_family(family: str) -> str:
        others = [name for name, t in targets.items() if t.family == family]
        return f' (--model {model})' + (f'; use --model {" / ".join(others)}' if others else '')
    weights = fit_weights(source, backbone, f'{model} backbone', other_family=other_family, report=report)
    source.state_dict = {}  # frees the file's tensors (e.g. the unused EMA copy)
    state_dict = weights.state_dict
    if deploy:
        state_dict, error = reparameterize_state_dict(target.build, state_dict, source.path)
        backbone = target.build(deploy=True)
        report.done('deploy', f'reparameterised: {len(state_dict)} tensors, max relative error '
                              f'{error:.1e} against the training form')
    meta = dict(source=str(Path(source.path).resolve()), source_sha256=source.sha256,
                model=model, family=target.family, arch=target.arch, **target.options,
                weights=source.wrapper, dropped=weights.dropped_groups(), renamed=weights.renamed,
                filled=list(weights.fit.filled), initial=list(weights.fit.initial),
                cropped={c.key: dict(source_shape=list(c.source_shape), target_shape=list(c.target_shape),
                                     norm_removed=c.norm_removed) for c in weights.crops},
                deploy=deploy, converter=CONVERTER)

    def written(temp: Path) -> None:
        size = f'{os.path.getsize(temp) / 2 ** 20:.1f} MB'
        report.done('write', f'{out_path} ({len(state_dict)} tensors, {size})')
        if verify_output:  # verified before it is moved into place: a bad result never lands
            report.done('verify', f'strict load and forward pass: {verify(temp, backbone)}')
    write_atomically({'state_dict': state_dict, 'meta': meta}, out_path, check=written)
    return Conversion(out_path, len(state_dict), len(weights.crops))
