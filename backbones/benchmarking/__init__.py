"""Benchmarking the backbones, as ``tools/benchmark.py`` reports it: params and MACs
beside the papers', throughput and peak memory of the training and deploy forms (and of the
deploy form in ONNX Runtime / OpenVINO). Pure torch + timm (+ the runtimes when asked): it
runs where mm is absent.

Forms are timed in interleaved rounds (one call of each per round), so that load from other
processes hits every form alike; medians and min-max are reported. Params are counted on the
deploy form, the one the papers report; MACs at 224x224 by ``torch.utils.flop_counter``
(:mod:`.counting`). The research instruments built on this (the kernel floor, the README's
zoo table) are scripts: ``scripts/kernel_floor.py``, ``scripts/zoo_table.py``.
"""
import fnmatch
import functools
import math
import os
import os.path as osp
import resource
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from .. import export
from ..errors import UserError
from ..models import registry
from ..models.specs import deploy_form, resolve
from ..weights import zoo
from .counting import MAC_COUNTER, count_macs, count_params


# ---- published numbers ----------------------------------------------------------------
# One table (backbones/weights/zoo.py) holds them, with what each paper counts (zoo.size_note).
# Strings keep the paper's precision: a difference within half its last digit is rounding.
# model -> the paper's params (M) and MACs (G) at 224.
PUBLISHED: Dict[str, dict] = {entry.name: dict(params=entry.params, macs=entry.macs)
                              for entry in zoo.MODELS if entry.params or entry.macs}


def difference(measured: float, published: Optional[str]) -> Tuple[Optional[float], str]:
    """(measured - published, why) for one column; why is empty where rounding does not explain it."""
    if published is None:
        return None, ''
    delta = measured - float(published)
    decimals = len(published.split('.')[1]) if '.' in published else 0
    step = 10 ** -decimals
    if abs(delta) <= step / 2 + 1e-9:
        return delta, 'paper rounding'
    if round(math.floor(measured / step + 1e-9) * step, decimals) == float(published):
        return delta, 'paper truncates'
    return delta, ''


# ---- model selection ------------------------------------------------------------------
def select_models(patterns: Optional[Sequence[str]]) -> List[str]:
    """Globs match this project's models; an exact timm name (e.g. resnet50) is taken as is, and
    so is an mm backbone ``TYPE:ARCH[:VARIANT]`` (``RecNeXt:m3``: its stage outputs, as detectors
    run it); every name is read by ``models.specs.resolve``."""
    ours = registry.model_names()
    if not patterns:
        return ours
    chosen = []
    for pattern in patterns:
        matched = fnmatch.filter(ours, pattern)
        if not matched:
            try:
                matched = [resolve(pattern, any_timm=True).spec]
            except UserError:
                raise UserError(f'no model matches {pattern!r}; this project has {", ".join(ours)}, '
                                'or give an exact timm model name or TYPE:ARCH') from None
        chosen += [name for name in matched if name not in chosen]
    return chosen


def both_forms(name: str) -> Tuple[nn.Module, nn.Module]:
    """The training form (eval mode) and the deploy form of ``name``, with the same weights."""
    spec = resolve(name, any_timm=True)
    torch.manual_seed(0)
    train = spec.build().eval()
    return train, deploy_form(train)


# ---- timing ---------------------------------------------------------------------------
def _sync(device: torch.device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


CLOCKS = {'wall': time.perf_counter, 'process': time.process_time}


def time_interleaved(runners: Dict[str, Callable[[], object]], device: torch.device,
                     warmup: int, repeats: int, clock: str = 'wall') -> Dict[str, List[float]]:
    """Seconds per call of each runner; one call of each per repeat, in turn.

    ``clock='process'`` counts this process's CPU time instead of wall time: on a CPU that
    other jobs share, with one thread, it measures the work rather than the queueing.
    """
    now = CLOCKS[clock]
    for _ in range(warmup):
        for run in runners.values():
            run()
    _sync(device)
    times = {name: [] for name in runners}
    for _ in range(repeats):
        for name, run in runners.items():
            start = now()
            run()
            _sync(device)
            times[name].append(now() - start)
    return times


def _rss_mib(field: str) -> Optional[float]:
    try:
        with open('/proc/self/status') as status:
            for line in status:
                if line.startswith(field + ':'):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def peak_memory_mib(run: Callable[[], object], device: torch.device) -> Tuple[float, float, str]:
    """(peak, peak minus the level before) of one call, MiB: max allocated on CUDA; on CPU
    the process's peak RSS, reset first through /proc/self/clear_refs where Linux allows."""
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device) / 2 ** 20
        run()
        _sync(device)
        peak = torch.cuda.max_memory_allocated(device) / 2 ** 20
        return peak, peak - before, 'CUDA max allocated'
    try:
        with open('/proc/self/clear_refs', 'w') as refs:
            refs.write('5')  # resets VmHWM, the peak resident set size, to the current RSS
        before = _rss_mib('VmRSS')
        run()
        peak = _rss_mib('VmHWM')
        return peak, peak - before, 'peak RSS'
    except (OSError, TypeError):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        run()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return peak, peak - before, 'lifetime peak RSS'


def summarise(times: List[float], batch: int) -> dict:
    rates = sorted(batch / t for t in times)
    return dict(median=statistics.median(rates), min=rates[0], max=rates[-1], repeats=len(rates))

RUNTIMES = ('torch', 'onnxruntime', 'openvino')


@dataclass
class SpeedOptions:
    """How :func:`benchmark_speed` and :func:`compute_floor` time (tools/benchmark.py's flags)."""
    warmup: int = 2
    repeats: int = 5
    clock: str = 'wall'               # 'process': this process's CPU time
    no_amp: bool = False              # fp32 on CUDA too (default: fp16 autocast)
    channels_last: str = 'auto'       # 'on', 'off', or 'auto' (CUDA only)
    compile: Optional[str] = None     # 'both' or 'deploy': torch.compile with frozen weights
    runtime: Sequence[str] = ('torch',)
    precision: str = 'fp32'           # 'bf16' adds bf16 forms, never counted as exact
    ort_optimization: str = 'all'
    ov_hint: str = 'LATENCY'
    ov_streams: Optional[int] = None

    @classmethod
    def of(cls, namespace) -> 'SpeedOptions':
        """The options from an object with these attributes (argparse's namespace)."""
        return cls(**{name: getattr(namespace, name) for name in cls.__dataclass_fields__})

def runtime_runners(name: str, deploy: nn.Module, train: nn.Module, x: torch.Tensor,
                    args: SpeedOptions, folder: str) -> Dict[str, Callable[[], object]]:
    """The deploy form exported at ``x``'s shape and loaded in each of ``--runtime``'s
    ONNX runtimes (fp32; plus OpenVINO bf16 with ``--precision bf16``), as timed runners.
    Each runtime's difference from the training form is printed (relative to the largest output)."""
    names = resolve(name, any_timm=True).output_names(train)
    target = export.ExportTarget(name, train, deploy, output_names=names)
    wanted = [runtime for runtime in args.runtime if runtime != 'torch']
    runners, loaded = {}, {}
    threads = torch.get_num_threads()
    for runtime in wanted:
        fmt = next(fmt for fmt, rt in export.FORMATS.items() if rt == runtime)
        where = osp.join(folder, f'{name}-{"x".join(map(str, x.shape))}-{fmt}')
        os.makedirs(where, exist_ok=True)
        path = export.export_files(target, fmt, x, where)
        options = dict(graph_optimization=args.ort_optimization, performance_hint=args.ov_hint,
                       num_streams=args.ov_streams)
        precisions = ['f32'] + (['bf16'] if args.precision == 'bf16' and runtime == 'openvino' else [])
        for precision in precisions:
            label = runtime if precision == 'f32' else f'{runtime}-{precision}'
            loaded[label] = export.load_runner(path, runtime, threads, precision, options)
    array = x.numpy()
    want = export.training_outputs(target, x)
    for label, runner in loaded.items():
        print(f'  {label}: {runner.describe}; difference from the training form '
              f'{export.relative_difference(runner(array), want):.1e}', flush=True)
        runners[label] = functools.partial(runner.run, array)
    return runners


def benchmark_speed(name: str, device: torch.device, shapes, args: SpeedOptions) -> List[dict]:
    """Throughput and peak memory of the training and deploy forms at each input shape,
    and of the deploy form in each ONNX runtime of ``--runtime`` (CPU), in the same rounds."""
    forms = dict(zip(('train', 'deploy'), both_forms(name)))
    amp = device.type == 'cuda' and not args.no_amp
    channels_last = args.channels_last == 'on' or (args.channels_last == 'auto' and device.type == 'cuda')
    exported = device.type == 'cpu' and any(runtime != 'torch' for runtime in args.runtime)
    bf16 = device.type == 'cpu' and args.precision == 'bf16'
    eager = dict(forms)
    for name_form, model in forms.items():
        model.to(device)
        if channels_last:
            model.to(memory_format=torch.channels_last)
        if args.compile == 'both' or (args.compile == 'deploy' and name_form == 'deploy'):
            # Inference only, so parameters are frozen as constants: conv weights are prepacked once.
            forms[name_form] = torch.compile(model, options=dict(freezing=True))
    rows = []
    folder = tempfile.mkdtemp(prefix='benchmark-export-') if exported else None
    try:
        for batch, height, width in shapes:
            x = torch.randn(batch, 3, height, width, device=device)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)

            def runner(model, autocast=amp, dtype=None):
                def run():
                    with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=autocast):
                        return model(x)
                return run
            runners = {form: runner(model) for form, model in forms.items()}
            if bf16:
                runners['deploy-bf16'] = runner(forms['deploy'], True, torch.bfloat16)
            if exported:
                runners.update(runtime_runners(name, eager['deploy'], eager['train'], x, args, folder))
            times = time_interleaved(runners, device, args.warmup, args.repeats, args.clock)
            row = dict(model=name, device=device.type, clock=args.clock, threads=torch.get_num_threads(),
                       amp=amp, channels_last=channels_last,
                       compiled=args.compile, batch=batch, height=height, width=width,
                       runtimes=[form for form in runners if form not in ('train', 'deploy')])
            for form in runners:
                memory, growth, kind = peak_memory_mib(runners[form], device)
                row[form] = dict(img_per_s=summarise(times[form], batch), peak_mib=memory,
                                 peak_growth_mib=growth, memory_kind=kind)
            train_rate = row['train']['img_per_s']['median']
            row['deploy_speedup'] = row['deploy']['img_per_s']['median'] / train_rate
            # The exact (fp32) forms only: bf16 never counts toward a target.
            exact = ['deploy'] + [form for form in row['runtimes'] if 'bf16' not in form]
            fastest = max(exact, key=lambda form: row[form]['img_per_s']['median'])
            row['speedup'] = {form: row[form]['img_per_s']['median'] / train_rate for form in runners}
            row['fastest_fp32'] = dict(form=fastest, speedup=row['speedup'][fastest])
            rows.append(row)
            print(format_speed_row(row), flush=True)
    finally:
        if folder:
            shutil.rmtree(folder, ignore_errors=True)
    return rows


def format_speed_row(row: dict) -> str:
    flags = [f"{row['threads']}t" if row['device'] == 'cpu' else '',
             'cpu-time' if row['clock'] == 'process' else '', 'amp' if row['amp'] else '',
             'cl' if row['channels_last'] else '',
             {'both': 'compiled', 'deploy': 'deploy-compiled'}.get(row['compiled'], '')]
    where = ' '.join([row['device']] + [flag for flag in flags if flag])
    parts = [f"{row['model']:<14} {where:<15} {row['batch']}x{row['height']}x{row['width']:<5}"]
    for form in ('train', 'deploy'):
        speed = row[form]['img_per_s']
        parts.append(f"{form} {speed['median']:7.3g} img/s ({speed['min']:.3g}-{speed['max']:.3g}), "
                     f"{row[form]['memory_kind']} {row[form]['peak_mib']:.0f} MiB "
                     f"(+{row[form]['peak_growth_mib']:.0f})")
    parts.append(f"deploy/train {row['deploy_speedup']:.2f}x")
    for form in row.get('runtimes', []):
        speed = row[form]['img_per_s']
        parts.append(f"{form} {speed['median']:7.3g} img/s ({speed['min']:.3g}-{speed['max']:.3g}) "
                     f"{row['speedup'][form]:.2f}x")
    if row.get('runtimes'):
        fastest = row['fastest_fp32']
        parts.append(f"fastest fp32: {fastest['form']} {fastest['speedup']:.2f}x train")
    return ' | '.join(parts)


# ---- size table -----------------------------------------------------------------------
def size_row(name: str) -> dict:
    model, fused = both_forms(name)
    train_params = count_params(model)
    model = fused
    row = dict(model=name, params_m=count_params(model) / 1e6, train_params_m=train_params / 1e6,
               macs_g=count_macs(model, 224) / 1e9, mac_counter=MAC_COUNTER)
    published = PUBLISHED.get(name, {})
    row['published'] = published
    notes = {}
    for key, label, measured in (('params', 'params', row['params_m']), ('macs', 'MACs', row['macs_g'])):
        delta, why = difference(measured, published.get(key))
        row[f'{key}_diff'] = delta
        if delta is not None:
            notes[label] = why or 'more than rounding: ' + zoo.size_note(name)
    same = len(set(notes.values())) == 1
    row['difference_note'] = '; '.join(
        dict.fromkeys(why if same else f'{label}: {why}' for label, why in notes.items()))
    return row


def format_number(value, spec='.2f', missing='-'):
    return missing if value is None else format(value + 0.0 if abs(value) >= 0.005 else 0.0, spec)  # no '-0.00'
