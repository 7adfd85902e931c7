"""Detectors and segmentors exported through mmdeploy 1.3.1, checked on their val set.

mmdeploy 1.3.1 (December 2023) predates this stack. What it needs here, each fix narrow
and applied only where it is needed (tests/test_mm_deploy.py tests every one):

* :func:`torchscript_onnx_export` (while exporting): torch 2.14's ``torch.onnx.export``
  defaults to the dynamo exporter, but mmdeploy's function and symbolic rewriters work on
  the TorchScript exporter's trace, so its export call gets ``dynamo=False``.
* :func:`add_cast_long_symbolic` (once): mmdeploy's RoIAlign symbolic imports
  ``torch.onnx.symbolic_opset9._cast_Long``, a helper torch has dropped; it is put back
  as the one ONNX ``Cast`` to int64 it was.
* :func:`use_openvino_core_api` (once): mmdeploy's OpenVINO wrapper and converter use the
  Inference Engine API and the ``mo`` tool, both removed from OpenVINO (2024.0 / 2025.0).
  Its backend manager gets a wrapper on ``openvino.Core`` with the fp32 precision hint
  (OpenVINO runs bf16 by default on CPUs with AMX), and the IR is converted from the ONNX
  file with ``openvino.convert_model``.
* :func:`use_exact_adaptive_pooling` (once): mmdeploy replaces ``adaptive_avg_pool2d``
  (UPerNet's and PSPNet's pyramid pooling) by an ``avg_pool2d`` whose kernel is fixed by the
  export image's size, so a dynamic-shape graph computes another function at any other
  size. Our rewriter exports the exact adaptive pooling for every size instead.
* :func:`use_class_specific_cascade` (once): mmdeploy's Cascade R-CNN rewriter asserts
  class-agnostic box regression, but mmdet's ConvNeXt cascade configs (and ours) regress per
  class. Around mmdeploy's own rewriter, each refining stage regresses only its top class's
  box, which is what mmdet's ``regress_by_class`` does at test time.

The entry point is :func:`export_mm_model`: deploy form (fused backbone), one ONNX graph
traced with mmdeploy's standard-op rewriters, run in ONNX Runtime or converted to
OpenVINO, evaluated with mmdeploy's backend model beside PyTorch on the val set, and
written only if the metrics agree. :func:`time_mm_forward` times the test-time forward in
each runtime beside PyTorch eager on the same images.
"""
import contextlib
import copy
import functools
import os
import os.path as osp
import shutil
import statistics
import tempfile
import time
from typing import Dict, List, Optional, Sequence

import torch
from torch.nn.modules.utils import _pair

from mm_efficient_backbones.backbones.errors import UserError

BACKENDS = ('onnxruntime', 'openvino')
CONFIG_DIR = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'configs', 'deploy')
# The check's tolerances (issue 19): COCO mAP is a fraction, mIoU a percentage.
TOLERANCES = {'bbox_mAP': 0.01, 'segm_mAP': 0.01, 'mIoU': 0.5}


class ExportCheckError(UserError):
    """The exported model's metrics differ from PyTorch's: nothing was written."""


# ---- the fixes -----------------------------------------------------------------------
@contextlib.contextmanager
def torchscript_onnx_export():
    """Make ``torch.onnx.export`` use the TorchScript exporter while the block runs."""
    original = torch.onnx.export
    torch.onnx.export = functools.partial(original, dynamo=False)
    try:
        yield
    finally:
        torch.onnx.export = original


def _cast_long(g, input, non_blocking):
    """The int64 cast of torch's old ``symbolic_opset9._cast_Long`` (non_blocking is
    meaningless in a graph)."""
    return g.op('Cast', input, to_i=torch.onnx.TensorProtoDataType.INT64)


def add_cast_long_symbolic() -> bool:
    """Put ``_cast_Long`` back into ``torch.onnx.symbolic_opset9`` where it is missing.
    Returns True if it was added."""
    import torch.onnx.symbolic_opset9 as opset9
    if hasattr(opset9, '_cast_Long'):
        return False
    opset9._cast_Long = _cast_long
    return True


def _openvino_wrapper_class():
    from mmdeploy.backend.base import BaseWrapper

    class OpenVINOCoreWrapper(BaseWrapper):
        """mmdeploy's wrapper interface on ``openvino.Core``: an IR (.xml + .bin) compiled
        for the CPU at the given inference precision (fp32 unless told)."""

        def __init__(self, ir_file: str, output_names: Optional[Sequence[str]] = None,
                     precision: str = 'f32'):
            import openvino as ov
            core = ov.Core()
            self.compiled = core.compile_model(ir_file, 'CPU', {'INFERENCE_PRECISION_HINT': precision})
            self.request = self.compiled.create_infer_request()
            if output_names is None:
                output_names = [output.get_any_name() for output in self.compiled.outputs]
            super().__init__(output_names)

        def forward(self, inputs: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
            results = self.request.infer(
                {name: tensor.detach().cpu().contiguous().numpy() for name, tensor in inputs.items()})
            return {name: torch.from_numpy(results[self.compiled.output(name)].copy())
                    for name in self.output_names}

    return OpenVINOCoreWrapper


def use_openvino_core_api() -> None:
    """Make mmdeploy's OpenVINO backend manager build :class:`OpenVINOCoreWrapper` (idempotent)."""
    from mmdeploy.backend.openvino.backend_manager import OpenVINOManager
    if getattr(OpenVINOManager, '_core_api', False):
        return
    wrapper_class = _openvino_wrapper_class()

    def build_wrapper(cls, backend_files, device='cpu', input_names=None, output_names=None,
                      deploy_cfg=None, **kwargs):
        precision = (deploy_cfg or {}).get('backend_config', {}).get('precision', 'f32')
        return wrapper_class(backend_files[0], output_names=output_names, precision=precision)
    OpenVINOManager.build_wrapper = classmethod(build_wrapper)
    OpenVINOManager._core_api = True


def adaptive_pooling_matrix(length, size: int, dtype: torch.dtype) -> torch.Tensor:
    """The ``size x length`` matrix of adaptive average pooling along one axis: row ``i``
    averages ``[floor(i * length / size), ceil((i + 1) * length / size))``, as torch does.
    ``length`` may be a traced size: the graph then holds the arithmetic, not its value
    (all of it on non-negative integers, where ONNX's truncating Div is a floor)."""
    index = torch.arange(size)
    start = index * length // size
    end = ((index + 1) * length + size - 1) // size
    position = torch.arange(length)
    inside = (position[None, :] >= start[:, None]) & (position[None, :] < end[:, None])
    return inside.to(dtype) / (end - start)[:, None].to(dtype)


def exact_adaptive_avg_pool2d(x: torch.Tensor, output_size) -> torch.Tensor:
    """``F.adaptive_avg_pool2d`` as two matrix products, exact for every input size (and one
    that any exporter writes with standard ops: Range, comparisons, MatMul)."""
    out_h, out_w = (x.shape[-2 + axis] if size is None else size for axis, size in enumerate(_pair(output_size)))
    rows = adaptive_pooling_matrix(x.shape[-2], out_h, x.dtype)
    columns = adaptive_pooling_matrix(x.shape[-1], out_w, x.dtype)
    return torch.matmul(torch.matmul(rows, x), columns.transpose(0, 1))


def use_exact_adaptive_pooling() -> None:
    """Register :func:`exact_adaptive_avg_pool2d` as mmdeploy's rewriter of
    ``F.adaptive_avg_pool2d`` for ONNX Runtime and OpenVINO (a backend's rewriter takes
    precedence over mmdeploy's default one). Global pooling stays the one ONNX op it is."""
    from mmdeploy.core import FUNCTION_REWRITER
    from mmdeploy.utils import Backend
    if getattr(use_exact_adaptive_pooling, 'done', False):
        return

    def adaptive_avg_pool2d__exact(input, output_size):
        if tuple(_pair(output_size)) == (1, 1):
            return FUNCTION_REWRITER.get_context().origin_func(input, output_size)
        return exact_adaptive_avg_pool2d(input, output_size)
    for backend in (Backend.ONNXRUNTIME, Backend.OPENVINO):
        FUNCTION_REWRITER.register_rewriter(func_name='torch.nn.functional.adaptive_avg_pool2d',
                                            backend=backend.value)(adaptive_avg_pool2d__exact)
    use_exact_adaptive_pooling.done = True


def _top_class_box_forward(head, x):
    """A class-specific box head's forward that returns only the box of each RoI's top
    class (background excluded), as mmdet's ``CascadeRoIHead._refine_roi`` chooses it."""
    cls_score, bbox_pred = type(head).forward(head, x)
    scores = head.loss_cls.get_activation(cls_score) if head.custom_activation else cls_score
    label = scores[:, :-1].argmax(dim=1)
    size = head.bbox_coder.encode_size
    boxes = bbox_pred.reshape(bbox_pred.shape[0], -1, size)
    return cls_score, boxes.gather(1, label.view(-1, 1, 1).expand(-1, 1, size)).squeeze(1)


@contextlib.contextmanager
def top_class_regression(roi_head):
    """Within the block, the refining (non-final) stages of a class-specific Cascade R-CNN
    return one box per RoI and say they are class-agnostic; the final stage is unchanged."""
    changed = [head for head in roi_head.bbox_head[:-1] if not head.reg_class_agnostic]
    for head in changed:
        head.reg_class_agnostic = True
        head.forward = functools.partial(_top_class_box_forward, head)
    try:
        yield
    finally:
        for head in changed:
            head.reg_class_agnostic = False
            del head.forward


def use_class_specific_cascade() -> None:
    """Register a rewriter of ``CascadeRoIHead.predict_bbox`` for ONNX Runtime and OpenVINO
    that runs mmdeploy's own one inside :func:`top_class_regression`."""
    from mmdeploy.codebase.mmdet.models.roi_heads import cascade_roi_head as mmdeploy_cascade
    from mmdeploy.core import FUNCTION_REWRITER
    from mmdeploy.utils import Backend
    if getattr(use_class_specific_cascade, 'done', False):
        return

    def cascade_roi_head__predict_bbox__any_regression(self, *args, **kwargs):
        with top_class_regression(self):
            return mmdeploy_cascade.cascade_roi_head__predict_bbox(self, *args, **kwargs)
    for backend in (Backend.ONNXRUNTIME, Backend.OPENVINO):
        FUNCTION_REWRITER.register_rewriter(
            'mmdet.models.roi_heads.cascade_roi_head.CascadeRoIHead.predict_bbox',
            backend=backend.value)(cascade_roi_head__predict_bbox__any_regression)
    use_class_specific_cascade.done = True


def install_mmdeploy_fixes() -> None:
    """Import mmdeploy and apply the permanent fixes (idempotent)."""
    try:
        import mmdeploy  # noqa: F401
    except ImportError as err:
        raise UserError(f'mmdeploy is not installed ({err}): run `make setup` '
                        '(scripts/setup_env.sh installs it)') from None
    add_cast_long_symbolic()
    use_openvino_core_api()
    use_exact_adaptive_pooling()
    use_class_specific_cascade()


@contextlib.contextmanager
def exporting():
    """The fixes that apply only while mmdeploy traces a model (RecNeXt's oneDNN fast path
    stands aside by itself while tracing: backbones.models.layers.tracing)."""
    with torchscript_onnx_export():
        yield


# ---- configs, models, data -----------------------------------------------------------
def load_model_config(config: str):
    from mmengine.config import Config
    if not osp.isfile(config):
        raise UserError(f'config not found: {config}')
    cfg = Config.fromfile(config)
    if cfg.get('default_scope') not in ('mmdet', 'mmseg'):
        raise UserError(f'{config} is neither an mmdet nor an mmseg config (default_scope is '
                        f'{cfg.get("default_scope")!r})')
    return cfg


def deploy_task(cfg) -> str:
    """'instance-seg', 'detection' or 'segmentation': which configs/deploy/ family fits."""
    if cfg.default_scope == 'mmseg':
        return 'segmentation'
    roi_head = cfg.model.get('roi_head') or {}
    return 'instance-seg' if roi_head.get('mask_head') else 'detection'


def deploy_config(cfg, backend: str):
    """The mmdeploy config of configs/deploy/ for this model and backend."""
    from mmengine.config import Config
    if backend not in BACKENDS:
        raise UserError(f'unsupported backend {backend!r}: choose one of {", ".join(BACKENDS)}')
    return Config.fromfile(osp.join(CONFIG_DIR, f'{deploy_task(cfg)}_{backend}_dynamic.py'))


def _val_dataloader(cfg, indices: Optional[int]):
    """The config's test loader, one image a batch, in this process (mmdeploy's backend
    models take one image size a batch)."""
    from mmengine.runner import Runner
    loader = copy.deepcopy(cfg.test_dataloader)
    loader.update(batch_size=1, num_workers=0, persistent_workers=False)
    if indices is not None:
        loader.dataset['indices'] = indices
    return Runner.build_dataloader(loader)


def build_pytorch_model(cfg, checkpoint: str):
    """The PyTorch model with ``checkpoint`` loaded strictly: a checkpoint that does not
    fit is refused, never half-loaded."""
    from mmengine.registry import MODELS
    from mmengine.runner.checkpoint import _load_checkpoint, _load_checkpoint_to_model

    from mm_efficient_backbones.mm_common.safe_load import allow_mmengine_checkpoints
    if not osp.isfile(checkpoint):
        raise UserError(f'checkpoint not found: {checkpoint}')
    allow_mmengine_checkpoints()
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.pop('pretrained', None)
    if 'backbone' in model_cfg:
        model_cfg.backbone.pop('init_cfg', None)  # the checkpoint has every weight
    model = MODELS.build(model_cfg)
    state = _load_checkpoint(checkpoint, map_location='cpu')
    try:
        _load_checkpoint_to_model(model, state, strict=True)
    except RuntimeError as err:
        first = str(err).strip().splitlines()
        raise UserError(f'{checkpoint} does not fit {cfg.model.type} with '
                        f'{cfg.model.get("backbone", {}).get("type")} as configured '
                        f'({first[-1].strip() if first else err}): pass this config\'s checkpoint') from None
    return model.eval()


def _first_image(cfg) -> str:
    dataset = _val_dataloader(cfg, 1).dataset
    info = dataset.get_data_info(0)
    return info['img_path']


def _evaluate(model, cfg, indices: Optional[int]) -> Dict[str, float]:
    from mmengine.evaluator import Evaluator
    loader = _val_dataloader(cfg, indices)
    evaluator = Evaluator(copy.deepcopy(cfg.test_evaluator))
    evaluator.dataset_meta = loader.dataset.metainfo
    coco_metrics = [metric for metric in evaluator.metrics if getattr(metric, '_coco_api', None)]
    if indices is not None and coco_metrics:
        # CocoMetric scores every image of its annotation file: restrict it to the subset.
        ids = [loader.dataset.get_data_info(i)['img_id'] for i in range(len(loader.dataset))]
        for metric in coco_metrics:
            metric.img_ids = ids
    with torch.no_grad():
        for data in loader:
            evaluator.process(data_samples=model.test_step(data), data_batch=data)
    metrics = evaluator.evaluate(len(loader.dataset))
    return {key.split('/')[-1]: float(value) for key, value in metrics.items()
            if key.split('/')[-1] in TOLERANCES}


# ---- export ----------------------------------------------------------------------------
def _export_onnx(cfg, deploy_cfg, checkpoint: str, work_dir: str, device: str = 'cpu') -> str:
    """mmdeploy's torch2onnx on the deploy form; returns the .onnx path."""
    from mmdeploy.apis import torch2onnx
    onnx_cfg = copy.deepcopy(deploy_cfg)
    # One graph for both runtimes: traced with mmdeploy's standard-op rewriters, which
    # OpenVINO reads as well (its own rewriters emit OpenVINO's experimental ops).
    onnx_cfg.backend_config = dict(type='onnxruntime')
    model_cfg = copy.deepcopy(cfg)
    model_cfg.model.backbone.pop('init_cfg', None)
    with exporting():
        torch2onnx(_first_image(cfg), work_dir, onnx_cfg.onnx_config.save_file, onnx_cfg,
                   model_cfg, checkpoint, device)
    return osp.join(work_dir, onnx_cfg.onnx_config.save_file)


def _convert_openvino(onnx_file: str) -> List[str]:
    import openvino as ov
    xml = osp.splitext(onnx_file)[0] + '.xml'
    ov.save_model(ov.convert_model(onnx_file), xml, compress_to_fp16=False)
    return [xml, osp.splitext(xml)[0] + '.bin']


def build_backend_model(cfg, backend: str, files: Sequence[str]):
    """mmdeploy's backend model (End2EndModel) on the exported files."""
    from mmdeploy.apis import build_task_processor
    install_mmdeploy_fixes()
    task = build_task_processor(cfg, deploy_config(cfg, backend), 'cpu')
    return task.build_backend_model(list(files))


def export_mm_model(config: str, checkpoint: str, backends: Sequence[str], out_dir: str,
                    check: bool = True, indices: Optional[int] = None) -> Dict[str, dict]:
    """Export a detector or segmentor in its deploy form through mmdeploy to each of
    ``backends``, and write each to ``out_dir/<backend>/`` only if its metrics on the
    config's val set agree with PyTorch's.

    ``backends``: 'onnxruntime' (``end2end.onnx``) and/or 'openvino' (``end2end.xml`` +
    ``.bin``, fp32). The graph is traced once and PyTorch is evaluated once, whatever the
    number of backends. ``indices``: evaluate on the first N val images only (quick checks).
    Returns ``{backend: dict(backend, precision, files, metrics=dict(pytorch=...,
    <backend>=...), differences, tolerances)}``. Raises :class:`ExportCheckError` when a
    backend's metric differs by more than :data:`TOLERANCES`: nothing is written for it
    (the backends that agree are written, and the error names them).
    """
    cfg = load_model_config(config)
    backends = [backends] if isinstance(backends, str) else list(dict.fromkeys(backends))
    if not backends:
        raise UserError(f'no backend given: choose from {", ".join(BACKENDS)}')
    # Each backend's deploy config is read now, so that an unknown one is refused before any
    # work; they share their ONNX part (configs/deploy/_base_onnx.py): the first one traces.
    deploy_cfgs = [deploy_config(cfg, backend) for backend in backends]
    install_mmdeploy_fixes()
    from mmengine.registry import init_default_scope
    init_default_scope(cfg.default_scope)
    pytorch_model = build_pytorch_model(cfg, checkpoint)  # refuses a checkpoint that does not fit
    parent = osp.dirname(osp.abspath(out_dir)) or '.'
    os.makedirs(parent, exist_ok=True)
    work_dir = tempfile.mkdtemp(prefix='.export-', dir=parent)
    try:
        onnx_file = _export_onnx(cfg, deploy_cfgs[0], checkpoint, work_dir)
        files = {backend: [onnx_file] if backend == 'onnxruntime' else _convert_openvino(onnx_file)
                 for backend in backends}
        results = {backend: dict(backend=backend, precision='fp32', tolerances=dict(TOLERANCES))
                   for backend in backends}
        failed = {}
        if check:
            init_default_scope(cfg.default_scope)
            reference = _evaluate(pytorch_model, cfg, indices)
            for backend in backends:
                exported = _evaluate(build_backend_model(cfg, backend, files[backend]), cfg, indices)
                differences = {key: exported[key] - reference[key] for key in reference}
                results[backend].update(metrics={'pytorch': reference, backend: exported},
                                        differences=differences)
                wrong = [f'{key} {exported[key]:.4f} vs {reference[key]:.4f} (tolerance {TOLERANCES[key]})'
                         for key, difference in differences.items() if abs(difference) > TOLERANCES[key]]
                if wrong:
                    failed[backend] = '; '.join(wrong)
        for backend in backends:
            if backend in failed:
                continue
            target_dir = osp.join(out_dir, backend)
            os.makedirs(target_dir, exist_ok=True)
            results[backend]['files'] = []
            for path in files[backend]:
                target = osp.join(target_dir, osp.basename(path))
                os.replace(path, target)  # the work dir is beside out_dir: one file system
                results[backend]['files'].append(target)
        if failed:
            written = [backend for backend in backends if backend not in failed]
            raise ExportCheckError(
                '; '.join(f'the {backend} export of {osp.basename(config)} differs from PyTorch: {why}'
                          for backend, why in failed.items())
                + f'; nothing written for {", ".join(failed)}'
                + (f' ({", ".join(written)} written to {out_dir})' if written else ''))
        return results
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)


# ---- timing ----------------------------------------------------------------------------
def time_mm_forward(config: str, checkpoint: str, exported: Dict[str, Sequence[str]],
                    images: int = 8, rounds: int = 5) -> Dict[str, float]:
    """Milliseconds per image of the test-time forward (``model.test_step``: preprocessing,
    network and post-processing, one image a batch) on the first ``images`` val images, in
    PyTorch eager (``torch``: as configured; ``torch-deploy``: fused backbone) and in each
    runtime of ``exported`` ({backend: files}, as :func:`export_mm_model` returns them).
    The runtimes take turns in each of ``rounds`` rounds; the median round counts. Every
    runtime uses its default threads (all cores), as torch does."""
    from mmengine.registry import init_default_scope
    cfg = load_model_config(config)
    install_mmdeploy_fixes()
    init_default_scope(cfg.default_scope)
    models = {'torch': build_pytorch_model(cfg, checkpoint)}
    models['torch-deploy'] = build_pytorch_model(cfg, checkpoint)
    models['torch-deploy'].backbone.switch_to_deploy()
    for backend, files in exported.items():
        models[backend] = build_backend_model(cfg, backend, files)
    batches = list(_val_dataloader(cfg, images))
    times = {name: [] for name in models}
    with torch.no_grad():
        for model in models.values():  # warm-up: first-call allocations and compilation
            model.test_step(batches[0])
        for _ in range(rounds):
            for name, model in models.items():
                start = time.perf_counter()
                for data in batches:
                    model.test_step(data)
                times[name].append((time.perf_counter() - start) * 1000 / len(batches))
    return {name: statistics.median(values) for name, values in times.items()}


EXPORTED_FILES = {'onnxruntime': ['end2end.onnx'], 'openvino': ['end2end.xml', 'end2end.bin']}


def exported_files(out_dir: str, backend: str) -> List[str]:
    """The files :func:`export_mm_model` wrote for ``backend`` under ``out_dir``."""
    files = [osp.join(out_dir, backend, name) for name in EXPORTED_FILES[backend]]
    missing = [path for path in files if not osp.isfile(path)]
    if missing:
        raise UserError(f'no {backend} export in {out_dir} ({missing[0]} not found): export it first with '
                        f'tools/export.py CONFIG CHECKPOINT --format ... --out {out_dir}')
    return files


def benchmark_test_forward(config: str, checkpoint: str, runtimes: Sequence[str], images: int = 8,
                           rounds: int = 5, exported_dir: Optional[str] = None) -> dict:
    """The test-time forward of a detector / segmentor in each of ``runtimes`` ('torch',
    'onnxruntime', 'openvino') beside eager PyTorch, on the first ``images`` val images.
    The runtimes are exported to a temporary folder and checked on those images first (as
    :func:`export_mm_model` checks), or taken from ``exported_dir`` where
    :func:`export_mm_model` wrote (and checked) them. Then :func:`time_mm_forward` times
    them. Returns a row for ``benchmark --json``: checks (metrics and differences; empty
    for an ``exported_dir``), ms_per_image, speedup (against eager PyTorch as configured)
    and the fastest fp32 form."""
    backends = [runtime for runtime in runtimes if runtime != 'torch']
    checks = {}
    if exported_dir or not backends:
        files = {backend: exported_files(exported_dir, backend) for backend in backends}
        ms = time_mm_forward(config, checkpoint, files, images=images, rounds=rounds)
    else:
        with tempfile.TemporaryDirectory(prefix='benchmark-mm-') as folder:
            checks = export_mm_model(config, checkpoint, backends, folder, check=True, indices=images)
            files = {backend: result['files'] for backend, result in checks.items()}
            ms = time_mm_forward(config, checkpoint, files, images=images, rounds=rounds)
    speedup = {form: ms['torch'] / value for form, value in ms.items()}
    fastest = min(ms, key=ms.get)
    return dict(config=config, checkpoint=checkpoint, images=images, rounds=rounds,
                threads=torch.get_num_threads(), exported_dir=exported_dir,
                checks={backend: {key: value for key, value in result.items() if key != 'files'}
                        for backend, result in checks.items()},
                ms_per_image=ms, speedup=speedup, fastest_fp32=dict(form=fastest, speedup=speedup[fastest]))


# ---- command line -----------------------------------
def format_metrics(result: dict) -> str:
    backend = result['backend']
    if 'metrics' not in result:
        return f'{backend}: not checked'
    return ', '.join(f'{key} {result["metrics"][backend][key]:.4f} (PyTorch {value:.4f}, '
                     f'difference {result["differences"][key]:+.4f})'
                     for key, value in result['metrics']['pytorch'].items())
