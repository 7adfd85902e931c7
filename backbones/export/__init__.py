"""Export of the deploy forms to ONNX and OpenVINO, each checked in its runtime before it is written.

    export_model('recnext_m3', fmt='onnx', shape=(1, 3, 224, 224), out='recnext_m3.onnx')
    export_model('RecNeXt:m3', fmt='openvino', dynamic=True, out='recnext_m3_backbone.xml')

What is exported is the deploy form (``switch_to_deploy()``: BN folded, branches collapsed;
RepNeXt at level 1) of a timm classifier of this project or of an mm backbone
(``TYPE:ARCH[:VARIANT]``, its stage outputs). The ONNX graph comes from torch's dynamo
exporter (the TorchScript one cannot express the symbolic sizes of the oriented conv's
shears); under export the models run standard ops only (``models.layers.tracing``). Before anything is written, the
runtime's outputs are compared with PyTorch's training form in fp32 on the export shape
and, for a dynamic export, on one more odd shape; a difference above ``TOLERANCE``
(relative to the largest output value) is refused and leaves no file.

OpenVINO runs bf16 by default on CPUs with bf16 units (AMX): every session here pins
``INFERENCE_PRECISION_HINT`` to f32 unless bf16 is asked for, and says which it uses.
onnx, onnxruntime and openvino are imported only when used.
"""
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from ..errors import UserError
from ..models.layers.oriented_conv import prepare_plans
from ..models.specs import deploy_form, resolve
from ..weights.fit import load_classifier_checkpoint

__all__ = ['FORMATS', 'TOLERANCE', 'ExportError', 'ExportTarget', 'Runner', 'build_target', 'check_outputs',
           'cpu_has_bf16', 'export_model', 'export_onnx', 'load_runner', 'odd_shape', 'parse_shape',
           'relative_difference', 'training_outputs']

# --format -> the runtime that checks (and runs) it.
FORMATS = {'onnx': 'onnxruntime', 'openvino': 'openvino'}
RUNTIMES = tuple(FORMATS.values())
TOLERANCE = 1e-4
ONNX_OPSET = 18


class ExportError(UserError, ValueError):
    """Bad export input (model, checkpoint, format, shape) or a failed check; one line."""


# ---- what is exported -----------------------------------------------------------------
@dataclass
class ExportTarget:
    """A model in its training form (the reference) and its deploy form (what is exported)."""
    name: str
    training: nn.Module
    deploy: nn.Module
    in_channels: int = 3
    output_names: List[str] = field(default_factory=lambda: ['logits'])


def build_target(spec: str, checkpoint: Optional[str] = None) -> ExportTarget:
    """``spec`` is a timm model of this project (``recnext_m3``) or an mm backbone
    (``RecNeXt:m3``, ``ConvNeXt1D:tiny:1dpp``), read by ``models.specs.resolve``;
    ``checkpoint`` must fit it exactly."""
    if checkpoint is not None and not os.path.isfile(checkpoint):
        raise ExportError(f'checkpoint not found: {checkpoint}')
    resolved = resolve(spec)
    torch.manual_seed(0)
    model = resolved.build().eval()
    if checkpoint:
        if resolved.is_backbone:
            model.load_pretrained(checkpoint)  # the pipeline: every tensor from the file, or one line
        else:
            load_classifier_checkpoint(model, spec, checkpoint)
    return ExportTarget(spec, model, deploy_form(model), getattr(model, 'in_channels', 3),
                        resolved.output_names(model))


# ---- shapes ---------------------------------------------------------------------------
def parse_shape(text: str) -> Tuple[int, int, int, int]:
    """'1x3x224x224' -> (1, 3, 224, 224); anything else is an ExportError."""
    parts = str(text).lower().split('x')
    if len(parts) != 4 or not all(part.isdigit() and int(part) > 0 for part in parts):
        raise ExportError(f"shape '{text}' is not BxCxHxW: give four positive integers, e.g. 1x3x224x224")
    return tuple(int(part) for part in parts)


def odd_shape(shape: Sequence[int]) -> Tuple[int, int, int, int]:
    """The second shape a dynamic export is checked on: one more image and odd sizes,
    193x257 for a 224x224 export (scaled for other sizes)."""
    batch, channels, height, width = shape
    return batch + 1, channels, round(height * 193 / 224) | 1, round(width * 257 / 224) | 1


# ---- outputs --------------------------------------------------------------------------
def _as_list(outputs) -> List[torch.Tensor]:
    return list(outputs) if isinstance(outputs, (tuple, list)) else [outputs]


def training_outputs(target: ExportTarget, x: torch.Tensor) -> List[np.ndarray]:
    """The training form's fp32 outputs: the reference every export is checked against."""
    with torch.inference_mode():
        try:
            outputs = _as_list(target.training(x))
        except RuntimeError as err:
            raise ExportError(f'{target.name} cannot run on {"x".join(map(str, x.shape))} '
                              f'({str(err).splitlines()[0][:120]}); use a larger shape') from None
    return [output.float().numpy() for output in outputs]


def relative_difference(got: Sequence[np.ndarray], want: Sequence[np.ndarray]) -> float:
    """max |got - want| / max |want|, the worst over the outputs (inf if shapes differ)."""
    if len(got) != len(want):
        return float('inf')
    worst = 0.0
    for a, b in zip(got, want):
        if a.shape != b.shape:
            return float('inf')
        scale = max(float(np.abs(b).max()), 1e-12)
        worst = max(worst, float(np.abs(a.astype(np.float64) - b).max()) / scale)
    return worst


# ---- runtimes -------------------------------------------------------------------------
def cpu_has_bf16() -> bool:
    """Whether the CPU has bf16 units (AMX or AVX-512 BF16), from /proc/cpuinfo's flags."""
    try:
        with open('/proc/cpuinfo') as info:
            flags = next((line.split(':', 1)[1].split() for line in info if line.startswith('flags')), [])
    except OSError:
        return False
    return 'amx_bf16' in flags or 'avx512_bf16' in flags


@dataclass
class Runner:
    """One loaded model in a runtime: ``runner(x)`` -> list of numpy outputs."""
    runtime: str
    precision: str
    describe: str
    run: Callable[[np.ndarray], List[np.ndarray]]

    def __call__(self, x) -> List[np.ndarray]:
        if isinstance(x, torch.Tensor):
            x = x.detach().float().contiguous().numpy()
        return self.run(np.ascontiguousarray(x, dtype=np.float32))


def _onnxruntime_runner(path: str, threads: Optional[int], options: Dict[str, object]) -> Runner:
    import onnxruntime as ort
    session_options = ort.SessionOptions()
    level = str(options.get('graph_optimization', 'all'))
    levels = {'disable': ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
              'basic': ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
              'extended': ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
              'all': ort.GraphOptimizationLevel.ORT_ENABLE_ALL}
    if level not in levels:
        raise ExportError(f"onnxruntime graph_optimization '{level}': use one of {', '.join(levels)}")
    session_options.graph_optimization_level = levels[level]
    session_options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if threads:
        session_options.intra_op_num_threads = threads
        session_options.inter_op_num_threads = 1
    session = ort.InferenceSession(path, session_options, providers=['CPUExecutionProvider'])
    name = session.get_inputs()[0].name

    def run(x):
        return session.run(None, {name: x})
    return Runner('onnxruntime', 'fp32', f'onnxruntime {ort.__version__} CPUExecutionProvider, fp32 '
                  f'(graph optimisation {level}, {threads or "default"} threads)', run)


def _openvino_runner(path: str, threads: Optional[int], precision: str, options: Dict[str, object]) -> Runner:
    import openvino as ov
    core = ov.Core()
    default = core.get_property('CPU', 'INFERENCE_PRECISION_HINT')
    default = default.to_string() if hasattr(default, 'to_string') else str(default)  # an ov.Type: 'f32'
    config = {'INFERENCE_PRECISION_HINT': precision,
              'PERFORMANCE_HINT': str(options.get('performance_hint', 'LATENCY'))}
    if threads:
        config['INFERENCE_NUM_THREADS'] = threads
    if options.get('num_streams'):
        config['NUM_STREAMS'] = int(options['num_streams'])
    compiled = core.compile_model(core.read_model(path), 'CPU', config)
    request = compiled.create_infer_request()
    outputs = len(compiled.outputs)

    def run(x):
        request.infer({0: x})
        return [np.array(request.get_output_tensor(index).data) for index in range(outputs)]
    return Runner('openvino', precision, f'openvino {ov.__version__} CPU, {precision} (INFERENCE_PRECISION_HINT; '
                  f"this CPU's default {default}), {config['PERFORMANCE_HINT']}, {threads or 'default'} threads", run)


def load_runner(path: str, runtime: str, threads: Optional[int] = None, precision: str = 'f32',
                options: Optional[Dict[str, object]] = None) -> Runner:
    """Load an exported model (.onnx, or OpenVINO's .xml) in ``runtime`` on the CPU.

    ``precision`` is OpenVINO's inference precision ('f32' exact, 'bf16' where the CPU has
    bf16 units); ONNX Runtime's CPU provider always computes fp32.
    """
    options = dict(options or {})
    if runtime == 'onnxruntime':
        if precision != 'f32':
            raise ExportError(f'onnxruntime on CPU runs fp32 only, not {precision}')
        return _onnxruntime_runner(path, threads, options)
    if runtime == 'openvino':
        if precision not in ('f32', 'bf16'):
            raise ExportError(f"openvino precision '{precision}': use f32 or bf16")
        if precision == 'bf16' and not cpu_has_bf16():
            raise ExportError('bf16 is unavailable here: this CPU has no bf16 units (amx_bf16 / avx512_bf16)')
        return _openvino_runner(path, threads, precision, options)
    raise ExportError(f"unknown runtime '{runtime}': use one of {', '.join(RUNTIMES)}")


# ---- export ---------------------------------------------------------------------------
def export_onnx(model: nn.Module, example: torch.Tensor, path: str, dynamic: bool = False,
                output_names: Optional[Sequence[str]] = None) -> str:
    """Write ``model``'s ONNX graph (dynamo exporter, opset 18, constants folded) to ``path``;
    with ``dynamic``, batch, height and width are symbolic."""
    prepare_plans(model)  # built from theta's values now: the exporter's tensors hold none
    dims = None
    if dynamic:
        auto = torch.export.Dim.DYNAMIC
        dims = ({0: auto, 2: auto, 3: auto},)
        if example.shape[0] == 1:  # traced at batch 1, the batch would be specialised to 1
            example = example.repeat(2, 1, 1, 1)
    with torch.no_grad():
        program = torch.onnx.export(model, (example,), dynamo=True, dynamic_shapes=dims, opset_version=ONNX_OPSET,
                                    input_names=['input'], output_names=list(output_names or []) or None,
                                    verbose=False, optimize=False)
    # Constant folding only: onnxscript's full optimizer adds pattern rewrites that took 70 % of
    # a ConvNeXt-1D export (its oriented convs are many small ops) and gained nothing in ONNX
    # Runtime or OpenVINO, which fuse the graph themselves (docs/measurements.md).
    import onnxscript
    onnxscript.optimizer.fold_constants_ir(program.model)
    onnxscript.optimizer.remove_unused_nodes(program.model)
    program.save(path)
    return path


def _to_openvino(onnx_path: str, xml_path: str) -> str:
    """Convert the ONNX graph to OpenVINO IR (``.xml`` + ``.bin``), weights kept in fp32."""
    import openvino as ov
    ov.save_model(ov.convert_model(onnx_path), xml_path, compress_to_fp16=False)
    return xml_path


def export_files(target: ExportTarget, fmt: str, example: torch.Tensor, folder: str, dynamic: bool = False) -> str:
    """Export ``target``'s deploy form in ``fmt`` into ``folder``; the path of the main file."""
    if fmt not in FORMATS:
        raise ExportError(f"unsupported format '{fmt}': use one of {', '.join(FORMATS)}")
    onnx_path = export_onnx(target.deploy, example, os.path.join(folder, 'model.onnx'), dynamic,
                            target.output_names)
    if fmt == 'onnx':
        return onnx_path
    xml_path = _to_openvino(onnx_path, os.path.join(folder, 'model.xml'))
    os.remove(onnx_path)
    return xml_path


def check_outputs(target: ExportTarget, runner: Runner, shapes: Sequence[Tuple[int, ...]],
                  tolerance: float = TOLERANCE, seed: int = 0) -> List[dict]:
    """The runtime's outputs against the training form's on each shape (random inputs)."""
    checks = []
    for shape in shapes:
        x = torch.randn(*shape, generator=torch.Generator().manual_seed(seed))
        difference = relative_difference(runner(x), training_outputs(target, x))
        checks.append(dict(shape=tuple(shape), difference=difference, ok=difference <= tolerance))
    return checks


def _out_files(out: str, fmt: str) -> Dict[str, str]:
    """{name in the export folder: destination} for ``--out``."""
    folder = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(folder):
        raise ExportError(f'output folder does not exist: {folder}')
    if fmt == 'openvino':
        if not out.endswith('.xml'):
            raise ExportError(f"--out {out}: OpenVINO writes NAME.xml and NAME.bin; give a path ending in .xml")
        return {'model.xml': out, 'model.bin': out[:-4] + '.bin'}
    return {'model.onnx': out}


def export_model(spec: str, fmt: str, out: Optional[str] = None, shape: Sequence[int] = (1, 3, 224, 224),
                 dynamic: bool = False, checkpoint: Optional[str] = None, tolerance: float = TOLERANCE,
                 threads: Optional[int] = None, log: Callable[[str], None] = print) -> dict:
    """Export ``spec``'s deploy form, check it in its runtime, then write it to ``out``.

    ``out=None`` checks without writing. A check above ``tolerance`` raises ExportError
    and writes nothing. Returns a report: model, format, runtime, precision, checks, files.
    """
    if fmt not in FORMATS:
        raise ExportError(f"unsupported format '{fmt}': use one of {', '.join(FORMATS)}")
    shape = parse_shape('x'.join(map(str, shape)))
    destinations = _out_files(out, fmt) if out else {}
    target = build_target(spec, checkpoint)
    if shape[1] != target.in_channels:
        raise ExportError(f'shape {"x".join(map(str, shape))} has {shape[1]} channels; '
                          f'{spec} takes {target.in_channels}')
    shapes = [tuple(shape)] + ([odd_shape(shape)] if dynamic else [])
    example = torch.randn(*shape)
    training_outputs(target, example)  # a size the model cannot take is bad input, said before exporting
    folder = tempfile.mkdtemp(prefix='.export-', dir=os.path.dirname(os.path.abspath(out)) if out else None)
    try:
        path = export_files(target, fmt, example, folder, dynamic)
        runner = load_runner(path, FORMATS[fmt], threads)
        log(f'{spec}: {fmt}{" (dynamic batch, height, width)" if dynamic else ""}, checked in {runner.describe}')
        checks = check_outputs(target, runner, shapes, tolerance)
        for check in checks:
            log(f'  {"x".join(map(str, check["shape"]))}: max difference from the PyTorch training form '
                f'{check["difference"]:.2e} (relative, tolerance {tolerance:g}) '
                f'{"ok" if check["ok"] else "REFUSED"}')
        failed = [check for check in checks if not check['ok']]
        if failed:
            raise ExportError(f'{spec} in {runner.runtime} differs from PyTorch by {failed[0]["difference"]:.2e} '
                              f'(relative) on {"x".join(map(str, failed[0]["shape"]))}, above {tolerance:g}; '
                              f'nothing written')
        # The .bin before the .xml: a reader never finds an .xml without its weights.
        for name in sorted(destinations, key=lambda name: name.endswith('.xml')):
            os.replace(os.path.join(folder, name), destinations[name])
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return dict(model=spec, format=fmt, runtime=runner.runtime, precision=runner.precision, dynamic=dynamic,
                checks=checks, files=list(destinations.values()))
