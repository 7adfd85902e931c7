"""Checkpoint files: safe loading, finding the weights in a wrapper, splitting keys by
prefix. The first steps of the checkpoint pipeline (:mod:`.pipeline`); which family a file
belongs to is read from its keys by the family records (``models.registry.guess_family``).
No mm imports.
"""
import os
import pickle
import re
import zipfile
from collections import OrderedDict
from typing import Dict, Iterable, Optional, Tuple

import torch

from ..errors import CheckpointError

__all__ = ['DETECTOR_PREFIX', 'CheckpointError', 'load_checkpoint_file', 'split_keys', 'strip_prefixes',
           'under_prefix', 'unwrap_state_dict']

# Wrappers that published checkpoints put around the weights, in the order we prefer them.
WRAPPER_KEYS = ('state_dict', 'model', 'model_ema', 'module')
# The prefix DataParallel/DDP adds to every key. (A detector's ``backbone.`` is a prefix
# the pipeline selects, as ``init_cfg``'s ``prefix`` does.)
STRIP_PREFIXES = ('module.',)
# What mmdet's and mmseg's models call their backbone: the prefix of its keys in a detector's
# or segmentor's checkpoint.
DETECTOR_PREFIX = 'backbone.'


def _looks_like_torch_file(path: str) -> bool:
    """torch.save writes a zip archive (or, before 1.6, a pickle stream)."""
    if zipfile.is_zipfile(path):
        return True
    with open(path, 'rb') as f:
        return f.read(1) == b'\x80'  # pickle protocol >= 2 opcode


def load_checkpoint_file(path: str, trust: bool = False,
                         trust_hint: str = 'if you trust its source, pass --trust-checkpoint') -> dict:
    """Load ``path`` on CPU with ``weights_only=True``.

    Arbitrary unpickling runs code from the file, so it needs ``trust=True``.
    """
    if not os.path.isfile(path):
        raise CheckpointError(f'checkpoint not found: {path}')
    if not _looks_like_torch_file(path):
        raise CheckpointError(f'{path} is not a torch checkpoint (neither a torch.save zip nor a pickle)')
    try:
        obj = torch.load(path, map_location='cpu', weights_only=not trust)
    except pickle.UnpicklingError as err:
        unsupported = re.search(r'Unsupported global: GLOBAL ([\w.]+)', str(err))
        if trust or not unsupported:
            raise CheckpointError(f'{path} is not a readable torch checkpoint ({_first_line(err)})') from None
        raise CheckpointError(f'{path} needs unpickling of arbitrary objects ({unsupported.group(1)}) '
                              f'to load; {trust_hint}') from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise CheckpointError(f'{path} is not a torch checkpoint ({_first_line(err)})') from None
    if not isinstance(obj, dict):
        raise CheckpointError(f'{path} holds a {type(obj).__name__}, not a state_dict or a dict of them')
    return obj


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:160] if text else type(err).__name__


def _is_state_dict(obj) -> bool:
    return isinstance(obj, dict) and len(obj) > 0 and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def unwrap_state_dict(checkpoint: dict, prefer_ema: bool = False) -> Tuple[Dict[str, torch.Tensor], str]:
    """Find the weights inside a checkpoint; return them and the wrapper key used.

    ``prefer_ema`` picks ``model_ema`` when both it and plain weights exist.
    """
    order = WRAPPER_KEYS
    if prefer_ema:
        order = ('model_ema',) + tuple(k for k in WRAPPER_KEYS if k != 'model_ema')
    for key in order:
        if _is_state_dict(checkpoint.get(key)):
            return strip_prefixes(checkpoint[key]), key
    if _is_state_dict(checkpoint):
        return strip_prefixes(checkpoint), '<raw state_dict>'
    found = ', '.join(sorted(map(str, checkpoint)))[:200]
    raise CheckpointError(f'no weights found in the checkpoint: expected a state_dict or one of '
                          f'{", ".join(WRAPPER_KEYS)} (found keys: {found})')


def strip_prefixes(state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Drop a wrapper prefix shared by every key (``module.``)."""
    for prefix in STRIP_PREFIXES:
        if state_dict and all(k.startswith(prefix) for k in state_dict):
            state_dict = OrderedDict((k[len(prefix):], v) for k, v in state_dict.items())
    return state_dict


def under_prefix(key: str, prefixes: Iterable[str]) -> Optional[str]:
    """The top-level prefix among ``prefixes`` that ``key`` belongs to, or None."""
    return next((p for p in prefixes if key == p or key.startswith(p + '.')), None)


def split_keys(state_dict: Dict[str, torch.Tensor], drop_prefixes: Iterable[str]):
    """Split into (kept, {prefix: dropped keys}) by top-level key prefix."""
    drop_prefixes = tuple(drop_prefixes)
    kept, dropped = OrderedDict(), OrderedDict((p, []) for p in drop_prefixes)
    for key, value in state_dict.items():
        prefix = under_prefix(key, drop_prefixes)
        if prefix is None:
            kept[key] = value
        else:
            dropped[prefix].append(key)
    return kept, OrderedDict((p, keys) for p, keys in dropped.items() if keys)
