"""Reading mmengine's own checkpoints with ``torch.load(weights_only=True)``.

The one allowlist that every entry point reading a detector's or segmentor's checkpoint
applies (the checkpoint check, train and test, reparameterize, mmdeploy's export): exactly
the types mmengine stores, and nothing else.
"""
import pickle

import numpy as np
import torch


def _history_buffer_method(owner, name: str):
    """Stand-in for ``builtins.getattr`` while unpickling: mmengine pickles the
    HistoryBuffer's statistics methods as ``getattr(HistoryBuffer, 'mean')``, and
    allowlisting the real getattr would let a file reach any attribute of anything."""
    from mmengine.logging import HistoryBuffer
    # The built-in four are only entered into _statistics_methods by the first instance.
    allowed = {'min', 'max', 'mean', 'current', *HistoryBuffer._statistics_methods}
    if owner is HistoryBuffer and name in allowed:
        return getattr(owner, name)
    raise pickle.UnpicklingError(f'getattr({owner!r}, {name!r}) is not allowed in a checkpoint')


def allow_mmengine_checkpoints() -> None:
    """Let ``torch.load(weights_only=True)`` (the default since torch 2.6) read the
    checkpoints that mmengine writes, by allowlisting exactly what it stores: the
    message hub's HistoryBuffer (numpy arrays and scalars inside, plus its statistics
    methods). The weights-only check stays on for everything else."""
    from mmengine.logging import HistoryBuffer
    numpy_core = getattr(np, '_core', None) or np.core
    numpy_types = [np.ndarray, np.dtype, numpy_core.multiarray._reconstruct,
                   numpy_core.multiarray.scalar]
    # numpy 2 pickles dtypes by their class, e.g. numpy.dtypes.Float64DType.
    numpy_types += sorted({type(np.dtype(code)) for code in np.typecodes['All'] if code not in 'OMm'},
                          key=lambda t: t.__name__)
    torch.serialization.add_safe_globals(
        [HistoryBuffer, *numpy_types, (_history_buffer_method, 'builtins.getattr')])
