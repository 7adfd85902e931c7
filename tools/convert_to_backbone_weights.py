"""Turn a published classifier checkpoint into a backbone checkpoint for mmdet / mmseg.

The weights are found inside any common wrapper (``model``, ``state_dict``,
``model_ema``, ``module`` or a raw state_dict, ``module.`` prefixes removed), the
classifier-only tensors are dropped, the keys are mapped to the backbone's layout,
kernels larger than the backbone's are centre-cropped where the family allows it,
and ``DIR/<model>_backbone.pth`` is written atomically as
``{'state_dict': ..., 'meta': {...}}``. Configs then load it with
``init_cfg=dict(type='Pretrained', checkpoint='checkpoints/<model>_backbone.pth')``.

Usage::

    convert_to_backbone_weights --model recnext_m3 --checkpoint recnext_m3.pth \\
        --output-dir checkpoints --verify
    python tools/convert_to_backbone_weights.py --model recnext_m3 \\
        --checkpoint recnext_m3_ema.pth --output-dir checkpoints --ema --force
    # Oriented1D's spelling: --variant joins the model name (convnext_tiny_1d)
    python tools/convert_to_backbone_weights.py --model convnext_tiny --variant 1d \\
        --checkpoint convnext_tiny_1d.pth --output_dir checkpoints

Options: ``--ema`` uses the EMA weights when the file has both; ``--verify`` loads
the result strictly into the backbone and runs one forward pass; ``--deploy`` writes
``<model>_backbone_deploy.pth`` in the reparameterised form that a ``deploy=True``
backbone builds directly (families with structural reparameterisation, e.g. RepNeXt); ``--force``
overwrites an existing output; ``--trust-checkpoint`` allows arbitrary unpickling
(only for files from a source you trust).

A family plugs in its rules on its backbone class (see :class:`FamilyRules`):
``classifier_prefixes``, an optional ``remap_classifier_keys(state_dict)`` and an
optional ``crop_classifier_kernels = True``. The crop table is never written down:
it comes from comparing the checkpoint's shapes with the built backbone's. Each crop
is reported with the fraction of the tensor's L2 norm it removed, 1 - |crop| / |full|.

Exit status: 0 on success, 1 for a checkpoint that cannot be converted (one line
on stderr, no output file left behind), 2 for a bad command line.
"""
import argparse
import contextlib
import hashlib
import os
import sys
import tempfile
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch

from mm_efficient_backbones.backbones import MODEL_TO_BACKBONE, BackboneConfigError
from mm_efficient_backbones.backbones.checkpoint import (CheckpointError, describe_shape_mismatch,
                                  load_checkpoint_file, split_keys, under_prefix,
                                  unwrap_state_dict)
from mm_efficient_backbones.backbones.multiscale import guess_family

PROG = 'convert_to_backbone_weights'
StateDict = Dict[str, torch.Tensor]
# The wrapper keys holding EMA weights that unwrap_state_dict(prefer_ema=True) picks.
EMA_WRAPPERS = ('model_ema',)
VERIFY_INPUT_SIZE = (64, 64)  # a smoke test: stride 32 still leaves a 2x2 map, and it stays quick
HASH_CHUNK = 4 << 20


class ConversionError(ValueError):
    """A checkpoint that cannot become the requested backbone; its message is one line."""


class UsageError(ValueError):
    """A bad command line (unknown model); its message is one line."""


# ---- family rules --------------------------------------------------------------------
@dataclass(frozen=True)
class FamilyRules:
    """How one family's classifier checkpoints become backbone checkpoints.

    Read from the backbone class (a ``MultiScaleBackbone``, which also holds the
    defaults), so a new family plugs in by overriding on its class:

    * ``classifier_prefixes``: top-level key prefixes, in the checkpoint's layout, that
      only the classifier has (``head``, a final ``norm`` the backbone lacks, ...);
    * ``remap_classifier_keys(state_dict) -> state_dict``: checkpoint layout ->
      backbone layout (identity by default; ``init_cfg`` loading uses it too);
    * ``crop_classifier_kernels = True``: the backbone uses smaller kernels than the
      classifier, so larger odd kernels are centre-cropped;
    * ``backbone_only_prefixes``: modules only the backbone has (ConvNeXt's output norms),
      written at the backbone's initial values.
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


@dataclass(frozen=True)
class Target:
    """The backbone a ``--model`` name converts to."""

    model: str
    backbone_cls: type
    arch: str
    rules: FamilyRules

    @property
    def family(self) -> str:
        return self.rules.family

    def build(self, deploy: bool = False) -> torch.nn.Module:
        return self.backbone_cls(self.arch, deploy=deploy)


def resolve_target(model: str) -> Target:
    if model not in MODEL_TO_BACKBONE:
        raise UsageError(f"unknown model '{model}': choose one of {', '.join(MODEL_TO_BACKBONE)}")
    backbone_cls, arch = MODEL_TO_BACKBONE[model]
    return Target(model, backbone_cls, arch, FamilyRules.of(backbone_cls))


def models_of_family(family: str) -> List[str]:
    return [name for name, (backbone_cls, _) in MODEL_TO_BACKBONE.items() if backbone_cls.family == family]


# ---- kernel cropping -----------------------------------------------------------------
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


@dataclass
class Crop:
    key: str
    source_shape: Tuple[int, ...]
    target_shape: Tuple[int, ...]
    norm_removed: float = 0.0

    def describe(self) -> str:
        return (f'{self.key} {_shape(self.source_shape)} -> {_shape(self.target_shape)}: '
                f'{100 * self.norm_removed:.1f}% of the L2 norm removed')


# ---- fitting a checkpoint to the backbone --------------------------------------------
@dataclass
class Fit:
    """How a (dropped, remapped) state_dict compares with the backbone's."""

    crops: Dict[str, tuple] = field(default_factory=dict)  # key -> crop window
    unexplained: List[tuple] = field(default_factory=list)  # (key, checkpoint, backbone shape)
    missing: List[str] = field(default_factory=list)
    unexpected: List[str] = field(default_factory=list)
    filled: List[str] = field(default_factory=list)  # BN counters taken from the backbone
    initial: List[str] = field(default_factory=list)  # backbone-only tensors, at their init
    matched: int = 0


def plan_fit(state_dict: StateDict, model_state: StateDict, rules: FamilyRules) -> Fit:
    fit = Fit()
    for key, value in state_dict.items():
        if key not in model_state:
            fit.unexpected.append(key)
            continue
        fit.matched += 1
        want = model_state[key].shape
        if value.shape == want:
            continue
        window = (centre_crop_window(value.shape, want)
                  if rules.crop_kernels and key.endswith('weight') else None)
        if window is None:
            fit.unexplained.append((key, tuple(value.shape), tuple(want)))
        else:
            fit.crops[key] = window
    for key in model_state:
        if key not in state_dict:
            # BN step counters are not weights; several releases omit them.
            if key.endswith('num_batches_tracked'):
                fit.filled.append(key)
            elif under_prefix(key, rules.backbone_only_prefixes):
                fit.initial.append(key)
            else:
                fit.missing.append(key)
    return fit


def check_fit(fit: Fit, target: Target, source: str, source_keys: Sequence[str]) -> None:
    """Raise the most telling one-line error when the checkpoint does not fit."""
    if not (fit.unexplained or fit.missing or fit.unexpected):
        return
    family = guess_family(source_keys)
    if family and family != target.family:
        others = models_of_family(family)
        hint = f'; use --model {" / ".join(others)}' if others else ''
        raise ConversionError(f'{source} looks like a {family} checkpoint, not {target.family} '
                              f'(--model {target.model}){hint}')
    if fit.matched == 0:
        raise ConversionError(f'{source}: no keys match the {target.model} backbone; pass a '
                              f'{target.family} classifier or backbone checkpoint')
    arch_hint = f'is it a checkpoint of another {target.family} arch?'
    if fit.unexplained:
        raise ConversionError(describe_shape_mismatch(
            fit.unexplained, f'{source}: shape mismatch that cropping cannot explain', hint=arch_hint))
    problems = []
    if fit.missing:
        problems.append(f'{len(fit.missing)} {target.model} backbone tensors are missing from the '
                        f'checkpoint (e.g. {fit.missing[0]})')
    if fit.unexpected:
        problems.append(f'{len(fit.unexpected)} checkpoint tensors are not in the {target.model} '
                        f'backbone (e.g. {fit.unexpected[0]})')
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


# ---- reporting -----------------------------------------------------------------------
class Progress:
    """One line per step on stdout, with the step's wall time."""

    def __init__(self, steps: Sequence[str], stream=None):
        self.steps, self.stream = list(steps), stream or sys.stdout
        self.last = time.perf_counter()

    def done(self, step: str, message: str) -> None:
        now = time.perf_counter()
        index = self.steps.index(step) + 1
        print(f'[{index}/{len(self.steps)}] {step:<6} {message} ({now - self.last:.2f} s)',
              file=self.stream, flush=True)
        self.last = now

    def detail(self, message: str) -> None:
        print(f'        {message}', file=self.stream, flush=True)


def warn(message: str) -> None:
    print(f'{PROG}: warning: {message}', file=sys.stderr, flush=True)


def _shape(shape) -> str:
    return 'x'.join(map(str, shape))


def _megabytes(path) -> str:
    return f'{os.path.getsize(path) / 2 ** 20:.1f} MB'


def group_dropped(dropped: Dict[str, List[str]]) -> Dict[str, int]:
    """Tensor counts per dropped module: ``head.head`` and ``head.head_dist`` apart."""
    counts = Counter()
    for prefix, keys in dropped.items():
        for key in keys:
            rest = key[len(prefix) + 1:].split('.')
            counts[f'{prefix}.{rest[0]}' if len(rest) > 1 else prefix] += 1
    return dict(counts)


def sha256_of(path: str) -> str:
    digest, buffer = hashlib.sha256(), bytearray(HASH_CHUNK)
    view = memoryview(buffer)
    with open(path, 'rb', buffering=0) as f:
        while True:
            size = f.readinto(buffer)
            if not size:
                return digest.hexdigest()
            digest.update(view[:size])


# ---- writing -------------------------------------------------------------------------
@contextlib.contextmanager
def staged_output(path: Path):
    """Yield a temp path next to ``path``; move it into place only if the block succeeds.

    Whatever fails (a write error, a failed verify, Ctrl-C), no partial output is left.
    """
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.name}.', suffix='.tmp')
    os.close(fd)
    try:
        yield Path(temp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temp, 0o666 & ~umask)  # mkstemp makes it private; give it a normal mode
        os.replace(temp, path)
    finally:
        if os.path.exists(temp):
            os.unlink(temp)


def save(payload: dict, path: Path) -> None:
    with open(path, 'wb') as f:
        torch.save(payload, f)
        f.flush()
        os.fsync(f.fileno())


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
        features = backbone(torch.randn(1, 3, *VERIFY_INPUT_SIZE))
    bad = [i for i, f in enumerate(features) if not torch.isfinite(f).all()]
    if bad:
        raise ConversionError(f'verify failed: non-finite features at output {bad[0]} '
                              f'for a random {_shape(VERIFY_INPUT_SIZE)} image')
    return 'features ' + ', '.join(_shape(f.shape[1:]) for f in features)


# ---- the conversion ------------------------------------------------------------------
def output_path_for(args, target: Target) -> Path:
    path = Path(args.output_dir) / f'{target.model}_backbone{"_deploy" if args.deploy else ""}.pth'
    if path.is_dir():
        raise ConversionError(f'{path} is a directory')
    if path.exists() and not args.force:
        raise ConversionError(f'{path} already exists; pass --force to overwrite it')
    return path


def load_source(args, progress: Progress) -> Tuple[dict, str]:
    checkpoint = load_checkpoint_file(args.checkpoint, trust=args.trust_checkpoint)
    digest = sha256_of(args.checkpoint)
    progress.done('load', f'{args.checkpoint} ({_megabytes(args.checkpoint)}, sha256 {digest[:12]})')
    return checkpoint, digest


def unwrap(checkpoint: dict, use_ema: bool, progress: Progress) -> Tuple[StateDict, str]:
    state_dict, wrapper = unwrap_state_dict(checkpoint, prefer_ema=use_ema)
    message = f'weights from a {wrapper[1:-1]}' if wrapper.startswith('<') else f"weights from '{wrapper}'"
    unused_ema = [key for key in EMA_WRAPPERS if key != wrapper and isinstance(checkpoint.get(key), dict)]
    if use_ema and wrapper not in EMA_WRAPPERS:
        warn(f"--ema given but the checkpoint has no EMA weights ({', '.join(EMA_WRAPPERS)}); "
             f"using '{wrapper}'")
    elif unused_ema and wrapper not in EMA_WRAPPERS:
        message += f" ('{unused_ema[0]}' also present: --ema uses it)"
    progress.done('unwrap', f'{message}, {len(state_dict)} tensors')
    return state_dict, wrapper


def drop_classifier(state_dict: StateDict, rules: FamilyRules, progress: Progress):
    state_dict, dropped = split_keys(state_dict, rules.classifier_prefixes)
    groups = group_dropped(dropped)
    progress.done('drop', ', '.join(f'{group}: {n} tensors' for group, n in groups.items())
                  or 'no classifier-only tensors')
    return state_dict, groups


def map_to_backbone(state_dict: StateDict, target: Target, model_state: StateDict,
                    source: str, source_keys: Sequence[str], progress: Progress):
    """Remap the keys and check that the result fits the backbone (up to kernel crops)."""
    before = set(state_dict)
    state_dict = target.rules.remap_keys(state_dict)
    renamed = len(set(state_dict) - before)
    fit = plan_fit(state_dict, model_state, target.rules)
    check_fit(fit, target, source, source_keys)
    layout = f'renamed {renamed} keys' if renamed else 'keys already in the backbone layout'
    filled = f', {len(fit.filled)} BN counters filled in' if fit.filled else ''
    if fit.initial:
        modules = sorted({key.split('.')[0] for key in fit.initial})
        filled += f', {len(fit.initial)} backbone-only tensors ({", ".join(modules)}) at their initial values'
    progress.done('map', f'{layout}; {fit.matched}/{len(model_state)} {target.family}-{target.arch} '
                         f'tensors found{filled}')
    return state_dict, fit, renamed


def crop_kernels(state_dict: StateDict, model_state: StateDict, fit: Fit, progress: Progress):
    state_dict, crops = apply_fit(state_dict, model_state, fit)
    if not crops:
        progress.done('crop', 'no kernels to crop')
        return state_dict, crops
    mean = sum(c.norm_removed for c in crops) / len(crops)
    progress.done('crop', f'{len(crops)} kernels centre-cropped, {100 * mean:.1f}% of the '
                          f'L2 norm removed on average')
    for c in crops:
        progress.detail(c.describe())
    return state_dict, crops


def convert(args, target: Target) -> Path:
    """Run every step; returns the output path. Raises one-line errors on bad input."""
    progress = Progress(['load', 'unwrap', 'drop', 'map', 'crop'] + (['deploy'] if args.deploy else [])
                        + ['write'] + (['verify'] if args.verify else []))
    out_path = output_path_for(args, target)  # before the slow steps: fail fast
    checkpoint, digest = load_source(args, progress)
    state_dict, wrapper = unwrap(checkpoint, args.ema, progress)
    del checkpoint  # frees the other wrapper's tensors (e.g. the unused EMA copy)
    source_keys = list(state_dict)
    state_dict, dropped = drop_classifier(state_dict, target.rules, progress)
    backbone = target.build()
    model_state = backbone.state_dict()
    state_dict, fit, renamed = map_to_backbone(state_dict, target, model_state, args.checkpoint,
                                               source_keys, progress)
    state_dict, crops = crop_kernels(state_dict, model_state, fit, progress)
    if args.deploy:
        # Imported here: tools/reparameterize.py builds on this module's writers.
        from mm_efficient_backbones.tools.reparameterize import reparameterize_backbone
        state_dict, error = reparameterize_backbone(target.backbone_cls, target.arch, state_dict)
        backbone = target.build(deploy=True)
        progress.done('deploy', f'reparameterised: {len(state_dict)} tensors, max relative error '
                                f'{error:.1e} against the training form')

    meta = dict(source=str(Path(args.checkpoint).resolve()), source_sha256=digest,
                model=target.model, family=target.family, arch=target.arch, weights=wrapper,
                dropped=dropped, renamed=renamed, filled=list(fit.filled), initial=list(fit.initial),
                cropped={c.key: dict(source_shape=list(c.source_shape), target_shape=list(c.target_shape),
                                     norm_removed=c.norm_removed) for c in crops},
                deploy=args.deploy, converter=PROG)
    try:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        with staged_output(out_path) as temp:
            save({'state_dict': state_dict, 'meta': meta}, temp)
            progress.done('write', f'{out_path} ({len(state_dict)} tensors, {_megabytes(temp)})')
            if args.verify:
                # Verified before it is moved into place: a bad result never lands.
                progress.done('verify', f'strict load and forward pass: {verify(temp, backbone)}')
    except OSError as err:
        raise ConversionError(f'cannot write {out_path}: {err}') from None
    if args.verify:
        print(f'ok: {len(state_dict)} tensors, {len(crops)} cropped', flush=True)
    return out_path


# ---- command line --------------------------------------------------------------------
def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split('\n\n')[0])
    parser.add_argument('--model', required=True,
                        help=f'target backbone, one of: {", ".join(MODEL_TO_BACKBONE)}')
    parser.add_argument('--variant', help='appended to the model name with an underscore, as in '
                                          "Oriented1D's spelling: convnext_tiny + 1d = convnext_tiny_1d")
    parser.add_argument('--checkpoint', required=True, help='classifier checkpoint to convert')
    parser.add_argument('--output-dir', '--output_dir', dest='output_dir', required=True,
                        help='writes OUTPUT_DIR/<model>_backbone.pth')
    parser.add_argument('--ema', action='store_true', help="use the EMA weights ('model_ema')")
    parser.add_argument('--verify', action='store_true',
                        help='load the result strictly into the backbone and run a forward pass')
    parser.add_argument('--deploy', action='store_true',
                        help='write the reparameterised (deploy=True) form as <model>_backbone_deploy.pth')
    parser.add_argument('--force', action='store_true', help='overwrite an existing output file')
    parser.add_argument('--trust-checkpoint', action='store_true',
                        help='allow arbitrary unpickling (runs code from the file: trusted sources only)')
    args = parser.parse_args(argv)
    if args.variant:
        args.model = f'{args.model}_{args.variant}'
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    try:
        target = resolve_target(args.model)
    except UsageError as err:
        print(f'{PROG}: error: {err}', file=sys.stderr)
        return 2
    try:
        convert(args, target)
    except (CheckpointError, ConversionError, BackboneConfigError, OSError) as err:
        print(f'{PROG}: error: {err}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
