"""Reparameterisation of trained detector and segmentor checkpoints (``reparameterize``).

A family whose deploy form has a state_dict of its own (its record says
``deploy_state=True``: RepNeXt's collapsed branches) trains in the multi-branch form; this
writes a trained checkpoint's ``backbone.*`` weights in the deploy form, checked against the
training form, so that ``model.backbone.deploy=True`` loads the file as it is. The models
stay in their family files; this is the checkpoint surgery. No mm imports.
"""
import functools
from pathlib import Path
from typing import Tuple

from ..models.registry import family, guess_family
from .checkpoint import DETECTOR_PREFIX, load_checkpoint_file
from .files import sha256_of
from .fit import ConversionError, fitting_arch
from .pipeline import check_output_path, reparameterize_state_dict, resolve_checkpoint, write_atomically

__all__ = ['TRAINING_STATE', 'reparameterize_checkpoint', 'reparameterize_file']

# Training-loop state that only resumes the training form.
TRAINING_STATE = ('optimizer', 'param_schedulers', 'message_hub')


def find_arch(record, state_dict, source: str) -> str:
    """The arch of ``record``'s backbone whose training-form keys and shapes are exactly
    those of ``state_dict``; a file already in the deploy form is named as such."""
    arch = fitting_arch(record.backbone, state_dict)
    if arch is not None:
        return arch
    # Only now the slower deploy builds, to say why nothing fits.
    deployed = fitting_arch(record.backbone, state_dict, deploy=True)
    if deployed is not None:
        raise ConversionError(f'{source}: the backbone is already in the deploy form ({record.type}-{deployed})')
    raise ConversionError(f'{source}: the backbone weights fit no {record.type} arch ({", ".join(record.archs)}) '
                          'in the training form exactly; is it already reparameterised?')


def reparameterize_checkpoint(checkpoint: dict, source: str, single_kernel: bool = False) -> Tuple[dict, str]:
    """A trained detector or segmentor checkpoint (tools/train.py's) -> the same with its
    ``backbone.*`` weights in the deploy form (checked against the training form), neck and
    heads unchanged, training-loop state dropped; and a one-line summary. ``single_kernel``:
    RepNeXt's level 2 (each ChunkConv one 11x11 conv)."""
    state_dict = checkpoint.get('state_dict')
    if not isinstance(state_dict, dict):
        raise ConversionError(f"{source} has no 'state_dict': pass a checkpoint written by tools/train.py")
    backbone_state = {k[len(DETECTOR_PREFIX):]: v for k, v in state_dict.items() if k.startswith(DETECTOR_PREFIX)}
    if not backbone_state:
        raise ConversionError(f'{source} has no {DETECTOR_PREFIX}* weights: pass a detector or segmentor checkpoint')
    found = guess_family(backbone_state)
    record = family(found) if found else None
    if record is None or not record.deploy_state:
        raise ConversionError(f'{source}: the backbone is ' + (
            f'a {found}, which has no separate deploy form to write: its deploy=True backbone loads the '
            'training weights and folds BN itself' if found else 'of no family with a separate deploy form'))
    arch = find_arch(record, backbone_state, source)
    build = functools.partial(record.backbone, arch, **(dict(single_kernel=True) if single_kernel else {}))
    deploy_state, error = reparameterize_state_dict(build, backbone_state, source)
    others = {k: v for k, v in state_dict.items() if not k.startswith(DETECTOR_PREFIX)}
    out = {key: value for key, value in checkpoint.items() if key not in TRAINING_STATE}
    out['state_dict'] = {**{DETECTOR_PREFIX + k: v for k, v in deploy_state.items()}, **others}
    meta = dict(out.get('meta') or {})
    meta['reparameterized'] = dict(family=record.type, arch=arch, single_kernel=single_kernel,
                                   source=str(source), max_relative_error=error,
                                   dropped=[k for k in TRAINING_STATE if k in checkpoint])
    out['meta'] = meta
    level = 'level 2 (single 11x11 ChunkConv)' if single_kernel else 'level 1'
    summary = (f'{record.type}-{arch} backbone: {len(backbone_state)} -> {len(deploy_state)} tensors, {level}; '
               f'{len(others)} other tensors kept; deploy vs training max relative error {error:.1e}')
    return out, summary


def reparameterize_file(checkpoint, output, single_kernel: bool = False, force: bool = False,
                        trust: bool = False) -> str:
    """:func:`reparameterize_checkpoint` from file to file (written atomically, with the
    source's sha256 in its meta); returns the summary."""
    output = check_output_path(Path(output), force)
    path = resolve_checkpoint(checkpoint, missing_hint=None)
    loaded = load_checkpoint_file(path, trust=trust, trust_hint='if you trust its source, pass --trust-checkpoint')
    out, summary = reparameterize_checkpoint(loaded, path, single_kernel)
    out['meta']['reparameterized']['source_sha256'] = sha256_of(path)
    write_atomically(out, output)
    return summary
