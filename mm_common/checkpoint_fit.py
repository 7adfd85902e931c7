"""One check of a detector or segmentor checkpoint against the model a config builds, run by
every entry point that loads one (tools/test.py, tools/infer.py, tools/train.py's ``--resume``
and ``load_from``) before any work, so that the wrong file is refused instead of half-loaded.

:func:`check_checkpoint_fits` checks, in order:

* the file is a readable torch checkpoint (one line otherwise: missing, text, cut short);
* the weights-only policy (``load_checkpoint_file``; mmengine's own training state is allowed);
* the backbone family and arch in the file against the config's, naming both when they differ;
* coverage: every tensor of the model must come from the file with its shape, except those
  under the parts the config names in ``checkpoint_new_parts`` (e.g. a head fine-tuned for new
  classes); otherwise the missing top-level parts (backbone, neck, rpn_head, ...) are listed
  and the run is refused unless ``allow_partial``.

An mmdet 2.x / mmseg 0.x file is checked after mm_common.legacy has mapped it.
"""
import copy
import os
import re
import zipfile
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from mm_efficient_backbones.backbones.errors import UserError, one_line
from mm_efficient_backbones.backbones.models import registry
from mm_efficient_backbones.backbones.weights.checkpoint import DETECTOR_PREFIX, load_checkpoint_file, under_prefix
from mm_efficient_backbones.backbones.weights.fit import fitting_arch, module_shapes, plan_fit

from .legacy import convert_legacy_checkpoint
from .safe_load import allow_mmengine_checkpoints

# The config key that names the parts of the model a checkpoint is not expected to cover.
NEW_PARTS_KEY = 'checkpoint_new_parts'
TRUST_HINT = ('this project only reads weights; re-save the state_dict (torch.save({"state_dict": sd}, path)) '
              'from a source you trust')
# Counters that BN keeps; they carry no learned weights.
IGNORED_SUFFIXES = ('num_batches_tracked',)


class CheckpointFitError(UserError):
    """A checkpoint that cannot be read, or that does not fit the model it is loaded into."""


@dataclass
class CheckpointFit:
    """What :func:`check_checkpoint_fits` found: the file's covered and missing tensors."""
    path: str
    checkpoint: dict = field(repr=False)
    covered: List[str]
    missing: Dict[str, List[str]]  # top-level part -> keys not in the file (or with another shape)
    new: Dict[str, List[str]]      # the same, under the config's checkpoint_new_parts
    unexpected: List[str]


def read_checkpoint(path: str) -> dict:
    """The checkpoint at ``path`` as a dict, under the weights-only policy; one line otherwise."""
    allow_mmengine_checkpoints()
    try:
        return load_checkpoint_file(path, trust_hint=TRUST_HINT)
    except UserError as err:
        if os.path.isfile(path) and _cut_short_zip(path):
            raise CheckpointFitError(f'{path} is a damaged torch checkpoint (cut short? its zip archive is '
                                     'incomplete); use another checkpoint') from None
        raise CheckpointFitError(str(err)) from None


def _cut_short_zip(path: str) -> bool:
    """A file that starts as torch.save's zip archive but whose end (the directory) is missing."""
    with open(path, 'rb') as f:
        return f.read(4) == b'PK\x03\x04' and not zipfile.is_zipfile(path)


def checkpoint_state_dict(checkpoint: dict) -> Dict[str, torch.Tensor]:
    """The model weights of an mm checkpoint as mmengine's ``load_checkpoint`` reads them: its
    ``state_dict`` (or the dict itself), without DataParallel's ``module.`` prefix."""
    state = checkpoint.get('state_dict', checkpoint)
    if not isinstance(state, dict):
        raise CheckpointFitError(f'its state_dict is a {type(state).__name__}, not a dict of tensors')
    return OrderedDict((re.sub(r'^module\.', '', k), v) for k, v in state.items()
                       if isinstance(v, torch.Tensor))


def _registry_of(cfg):
    scope = cfg.get('default_scope')
    from mmengine.registry import init_default_scope
    init_default_scope(scope)
    if scope == 'mmdet':
        from mm_efficient_backbones import detection  # noqa: F401  (registers the backbones)
        from mmdet.registry import MODELS
    elif scope == 'mmseg':
        from mm_efficient_backbones import segmentation  # noqa: F401
        from mmseg.registry import MODELS
    else:
        raise CheckpointFitError(f"the config's default_scope is {scope!r}; expected 'mmdet' or 'mmseg' "
                                 '(inherit an mmdet:: or mmseg:: base config)')
    return MODELS


def model_shapes(cfg) -> Dict[str, Tuple[int, ...]]:
    """{state_dict key: shape} of the model ``cfg.model`` builds (no weights are loaded)."""
    models = _registry_of(cfg)
    model_cfg = copy.deepcopy(cfg.model)
    if isinstance(model_cfg.get('backbone'), dict):
        model_cfg['backbone']['init_cfg'] = None  # the check reads no pretrained file
    try:
        return module_shapes(lambda: models.build(model_cfg))
    except UserError:
        raise
    except (KeyError, TypeError, ValueError, AssertionError) as err:
        raise CheckpointFitError(f'cannot build the config\'s model: {one_line(err)}') from None


def _part(key: str) -> str:
    return key.split('.', 1)[0]


def _by_part(keys: Sequence[str]) -> Dict[str, List[str]]:
    parts: Dict[str, List[str]] = OrderedDict()
    for key in keys:
        parts.setdefault(_part(key), []).append(key)
    return parts


def _backbone_name(backbone_cfg: dict) -> str:
    variant = f"-{backbone_cfg['variant']}" if backbone_cfg.get('variant') else ''
    return f"{backbone_cfg.get('type')}-{backbone_cfg.get('arch')}{variant}"


def _fitting_arch(backbone_cfg: dict, file_backbone: Dict[str, torch.Tensor]) -> Optional[str]:
    """The arch of the config's family whose backbone the file's backbone tensors fit exactly."""
    options = {k: v for k, v in backbone_cfg.items() if k not in ('type', 'arch', 'init_cfg')}
    return fitting_arch(registry.family(backbone_cfg['type']).backbone, file_backbone, exact=False, **options)


def check_backbone(cfg, path: str, state: Dict[str, torch.Tensor], shapes: Dict[str, tuple]) -> None:
    """Refuse a file whose backbone is of another family or arch than the config's, naming both."""
    backbone_cfg = cfg.model.get('backbone')
    if not isinstance(backbone_cfg, dict) or registry.family(backbone_cfg.get('type')) is None:
        return  # not one of our families: the coverage check below still applies
    file_backbone = {k[len(DETECTOR_PREFIX):]: v for k, v in state.items() if k.startswith(DETECTOR_PREFIX)}
    if not file_backbone:
        return  # no backbone in the file: coverage lists it as missing
    wanted = _backbone_name(backbone_cfg)
    family = registry.guess_family(file_backbone)
    if family and family != backbone_cfg['type']:
        raise CheckpointFitError(f'{path} holds a {family} backbone but the config builds {wanted}; '
                                 f'pass a checkpoint of a {wanted} model, or the config of the checkpoint\'s model')
    mismatched = [k for k, v in file_backbone.items()
                  if DETECTOR_PREFIX + k in shapes and tuple(v.shape) != shapes[DETECTOR_PREFIX + k]]
    if not mismatched:
        return
    arch = _fitting_arch(dict(backbone_cfg), file_backbone)
    if arch is not None:
        found = _backbone_name(dict(backbone_cfg, arch=arch))
        raise CheckpointFitError(f'{path} holds a {found} backbone but the config builds {wanted}; '
                                 f'pass a {wanted} checkpoint, or set model.backbone.arch={arch}')
    key = mismatched[0]
    raise CheckpointFitError(f'{path}: backbone.{key} has shape {tuple(file_backbone[key].shape)} in the file '
                             f'but {shapes[DETECTOR_PREFIX + key]} in the config\'s {wanted} '
                             f'(and {len(mismatched) - 1} more); it is not a {wanted} checkpoint')


def check_checkpoint_fits(cfg, path: str, allow_partial: bool = False,
                          partial_hint: str = 'pass --allow-partial to load it anyway') -> CheckpointFit:
    """Check the detector/segmentor checkpoint ``path`` against the model that ``cfg`` builds;
    raise :class:`CheckpointFitError` (one line) when it cannot be read or does not fit.

    Returns what was found; ``fit.checkpoint`` is the (legacy-mapped) checkpoint itself."""
    return _check_fit(cfg, path, read_checkpoint(path), allow_partial, partial_hint)


def _check_fit(cfg, path: str, checkpoint: dict, allow_partial: bool,
               partial_hint: str = 'pass --allow-partial to load it anyway') -> CheckpointFit:
    convert_legacy_checkpoint(checkpoint)
    try:
        state = checkpoint_state_dict(checkpoint)
    except CheckpointFitError as err:
        raise CheckpointFitError(f'{path}: {err}') from None
    shapes = model_shapes(cfg)
    check_backbone(cfg, path, state, shapes)
    report = plan_fit(state, shapes)  # BN counters (IGNORED_SUFFIXES) count as filled, not missing
    unfit = set(report.missing) | {key for key, _, _ in report.unexplained}
    absent = [k for k in shapes if k in unfit]
    new_parts = tuple(cfg.get(NEW_PARTS_KEY) or ())
    missing = _by_part([k for k in absent if not under_prefix(k, new_parts)])
    fit = CheckpointFit(path=path, checkpoint=checkpoint, covered=[k for k in shapes if k in set(report.exact)],
                        missing=missing, new=_by_part([k for k in absent if under_prefix(k, new_parts)]),
                        unexpected=report.unexpected)
    if missing and not allow_partial:
        totals = Counter(_part(k) for k in shapes if not k.endswith(IGNORED_SUFFIXES))
        listed = ', '.join(f'{part} ({len(keys)} of {totals[part]} tensors)' for part, keys in missing.items())
        raise CheckpointFitError(f'{path} does not cover the model: missing or of another shape: {listed}; '
                                 f'{partial_hint}, or name the parts the file need not cover in the '
                                 f'config\'s {NEW_PARTS_KEY}')
    return fit


def check_resume_checkpoint(cfg, path: str, allow_partial: bool = False) -> CheckpointFit:
    """:func:`check_checkpoint_fits` for ``--resume``: the file must also hold mmengine's training
    state (``meta`` with epoch and iter), which is checked first."""
    checkpoint = read_checkpoint(path)
    meta = checkpoint.get('meta')
    if not isinstance(meta, dict) or 'iter' not in meta or 'epoch' not in meta:
        raise CheckpointFitError(f'{path} holds no mmengine training state (meta with epoch and iter), so '
                                 'training cannot resume from it; to start from its weights pass '
                                 f'--cfg-options load_from={path}')
    return _check_fit(cfg, path, checkpoint, allow_partial)


# Checkpoints that mmengine's CheckpointHook writes: epoch_N.pth / iter_N.pth.
STEP_CHECKPOINT = re.compile(r'^(epoch|iter)_(\d+)\.pth$')


def resume_candidates(work_dir: str) -> List[str]:
    """The checkpoints in ``work_dir`` to resume from, newest first: the one ``last_checkpoint``
    names, then every epoch_N.pth / iter_N.pth by N, descending."""
    found = []
    if os.path.isdir(work_dir):
        steps = [(int(m.group(2)), name) for name in os.listdir(work_dir)
                 if (m := STEP_CHECKPOINT.match(name))]
        found = [os.path.join(work_dir, name) for _, name in sorted(steps, reverse=True)]
    pointer = os.path.join(work_dir, 'last_checkpoint')
    if os.path.isfile(pointer):
        with open(pointer, errors='replace') as f:
            last = f.read().strip()
        if last:
            found = [last] + [p for p in found if os.path.abspath(p) != os.path.abspath(last)]
    return found


def find_resume_checkpoint(cfg, work_dir: str, allow_partial: bool = False, warn=print) -> Optional[str]:
    """The newest checkpoint in ``work_dir`` that can be resumed (readable, fits ``cfg``'s model,
    holds mmengine's training state), passing over each other one with a one-line ``warn``.
    None when ``work_dir`` holds no checkpoint; one line (an error) when none of them is usable."""
    candidates = resume_candidates(work_dir)
    for path in candidates:
        if not os.path.isfile(path):
            warn(f'warning: passing over {path} (named by {work_dir}/last_checkpoint): not found')
            continue
        try:
            check_resume_checkpoint(cfg, path, allow_partial)
        except CheckpointFitError as err:
            warn(f'warning: passing over a checkpoint that cannot be resumed: {err}')
            continue
        return path
    if candidates:
        raise CheckpointFitError(f'no checkpoint in {work_dir} can be resumed ({len(candidates)} passed over, '
                                 'see the warnings above); drop --resume to train from scratch, '
                                 'or pass --resume PATH')
    return None


def check_training_checkpoints(cfg, resume: Optional[str] = None, allow_partial: bool = False,
                               warn=print) -> Optional[str]:
    """Before training: check what the run will load, and point ``cfg`` at it.

    ``resume='auto'``: the newest resumable checkpoint of ``cfg.work_dir`` (see
    :func:`find_resume_checkpoint`; none at all: train from scratch, with a warning);
    ``resume=PATH``: that file, which must hold mmengine's training state; otherwise
    ``cfg.load_from``, if set. Each is checked against the model (which is built, on the meta
    device where it can be, in any case). Returns the checkpoint the run will load, if any."""
    from .atomic_checkpoint import remove_stale_temp_files
    if resume == 'auto':
        for path in remove_stale_temp_files(cfg.work_dir):
            warn(f'warning: removed {path}, left by a save that was interrupted')
        path = find_resume_checkpoint(cfg, cfg.work_dir, allow_partial, warn)
        if path is None:
            warn(f'warning: --resume: no checkpoint in {cfg.work_dir} yet, training from scratch')
            cfg.resume, cfg.load_from = False, None
            return None
        cfg.resume, cfg.load_from = True, path
        return path
    if resume:
        if not os.path.isfile(resume):
            raise CheckpointFitError(f'checkpoint to resume not found: {resume}')
        check_resume_checkpoint(cfg, resume, allow_partial)
        cfg.resume, cfg.load_from = True, resume
        return resume
    if cfg.get('load_from'):
        check_checkpoint_fits(cfg, cfg.load_from, allow_partial)
        return cfg.load_from
    model_shapes(cfg)  # nothing to load: still, the config's model must build
    return None


def config_of_checkpoint(path: str):
    """The config that tools/train.py stored in checkpoint ``path`` (mmengine's ``meta['cfg']``),
    for tools that get a checkpoint without a config (e.g. reparameterize): pass it to
    :func:`check_checkpoint_fits`. One line when the file holds none."""
    from mmengine.config import Config
    meta = read_checkpoint(path).get('meta')
    text = meta.get('cfg') if isinstance(meta, dict) else None
    if not isinstance(text, str) or not text.strip():
        raise CheckpointFitError(f'{path} holds no config (meta.cfg, written by tools/train.py); '
                                 'pass the config it was trained with')
    try:
        return Config.fromstring(text, file_format='.py')
    except (SyntaxError, ImportError, KeyError, TypeError, ValueError) as err:
        raise CheckpointFitError(f'{path}: its stored config does not load ({one_line(err)})') from None
