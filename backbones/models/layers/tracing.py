"""Whether a forward is being compiled, exported or traced rather than run (no mm imports).

The models' fast paths (oneDNN's fused kernels, the oriented conv's cached channel plans)
read tensor values or call kernels that exporters cannot express; under tracing they run
standard ops instead. The export part imports this; the models never import the export part.
"""
import torch

__all__ = ['is_tracing']


def is_tracing() -> bool:
    """Whether this forward is being compiled, exported or traced rather than run: then
    tensors may hold no data (fake tensors) and custom kernels have no symbolic, so the
    models read no tensor values or pointers and run standard ops only. The compile check
    comes first so that dynamo never reaches the others."""
    if torch.compiler.is_compiling():
        return True
    is_exporting = getattr(torch.compiler, 'is_exporting', None)
    return bool((is_exporting is not None and is_exporting()) or torch.jit.is_tracing()
                or torch.onnx.is_in_onnx_export())
