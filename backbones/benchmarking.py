"""Benchmarking the backbones, as ``tools/benchmark.py`` reports it: params and MACs
beside the papers', throughput and peak memory of the training and deploy forms (and of the
deploy form in ONNX Runtime / OpenVINO), and a floor for what any deploy form of these
kernels can gain. Pure torch + timm (+ the runtimes when asked): it runs where mm is absent.

Forms are timed in interleaved rounds (one call of each per round), so that load from other
processes hits every form alike; medians and min-max are reported. Params are counted on the
deploy form, the one the papers report; MACs at 224x224 by ``torch.utils.flop_counter``
(backbones/counting.py).
"""
import collections
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
import torch.nn.functional as F
from torch import nn

import timm

from mm_efficient_backbones import backbones  # registers the models
from mm_efficient_backbones.backbones import zoo
from mm_efficient_backbones.backbones.counting import MAC_COUNTER, count_macs, count_params
from mm_efficient_backbones.backbones.errors import UserError


# ---- published numbers ----------------------------------------------------------------
# One table (backbones/zoo.py) holds them, with what each paper counts (zoo.size_note).
# Strings keep the paper's precision: a difference within half its last digit is rounding.
# model -> the paper's params (M) and MACs (G) at 224.
PUBLISHED: Dict[str, dict] = {entry.name: dict(params=entry.params, macs=entry.macs)
                              for entry in zoo.MODELS if entry.params or entry.macs}


def family_of(name: str) -> str:
    return name.split('_')[0]


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
def project_models() -> List[str]:
    """Models this project provides: its own timm registrations and the mm backbones' models."""
    own = [name for name in timm.list_models()
           if timm.models.model_entrypoint(name).__module__.startswith(backbones.__name__ + '.')]
    return sorted(set(own) | set(backbones.MODEL_TO_BACKBONE))


def select_models(patterns: Optional[Sequence[str]]) -> List[str]:
    """Globs match this project's models; an exact timm name (e.g. resnet50) is taken as is, and
    so is an mm backbone ``TYPE:ARCH`` (``RecNeXt:m3``: its stage outputs, as detectors run it)."""
    ours = project_models()
    if not patterns:
        return ours
    chosen = []
    for pattern in patterns:
        matched = fnmatch.filter(ours, pattern) or (
            [pattern] if ':' in pattern or pattern in timm.list_models() else [])
        if not matched:
            raise UserError(f'no model matches {pattern!r}; this project has '
                             f'{", ".join(ours)} (or give an exact timm model name)')
        chosen += [name for name in matched if name not in chosen]
    return chosen


def deploy_form(model: nn.Module) -> nn.Module:
    """``model.fuse()`` (or ``switch_to_deploy()``) where the model has one, else the model."""
    for method in ('fuse', 'switch_to_deploy'):
        if callable(getattr(model, method, None)):
            return getattr(model, method)() or model
    return model


def both_forms(name: str) -> Tuple[nn.Module, nn.Module]:
    """The training form (eval mode) and the deploy form of ``name``, with the same weights."""
    if ':' in name:
        target = _backbone_target(name)
        return target.training, target.deploy
    torch.manual_seed(0)
    train = timm.create_model(name).eval()
    deploy = timm.create_model(name).eval()
    deploy.load_state_dict(train.state_dict())
    return train, deploy_form(deploy)


def _backbone_target(spec: str):
    """An mm backbone ``TYPE:ARCH`` in both forms (backbones.export builds them)."""
    from mm_efficient_backbones.backbones import export
    return export.build_target(spec)


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
    from mm_efficient_backbones.backbones import export
    names = _backbone_target(name).output_names if ':' in name else ['logits']
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


# ---- a floor: the unavoidable work on its fastest kernel -------------------------------
def recorded_ops(model: nn.Module, x: torch.Tensor) -> collections.Counter:
    """{(module, input shape): calls} of the convs and GELUs in one forward of ``model``
    (the training form: its layers are called as modules, so hooks see them)."""
    calls = collections.Counter()

    def record(module, inputs):
        calls[module, tuple(inputs[0].shape)] += 1
    hooks = [module.register_forward_pre_hook(record) for module in model.modules()
             if isinstance(module, (nn.Conv2d, nn.GELU))]
    try:
        with torch.inference_mode():
            model(x)
    finally:
        for hook in hooks:
            hook.remove()
    return calls


def _to_blocked(x: torch.Tensor) -> torch.Tensor:
    """``x`` in oneDNN's blocked layout (nChw8c on AVX2), which only its opaque tensors hold:
    a conv of an mkldnn tensor returns one."""
    import torch.utils.mkldnn as mkldnn_utils
    identity = nn.Conv2d(x.shape[1], x.shape[1], 1).eval()
    with torch.no_grad():
        identity.weight.copy_(torch.eye(x.shape[1]).view_as(identity.weight))
        identity.bias.zero_()
    with torch.inference_mode():
        return mkldnn_utils.to_mkldnn(identity)(x.to_mkldnn())


def bare_kernels(module: nn.Module, x: torch.Tensor) -> Dict[str, Callable[[], object]]:
    """The op of one conv (its weight, no bias, no activation) or GELU on input ``x``, on each
    CPU kernel and layout we know. Every kernel computes the same values, in its own layout."""
    x_nhwc = x.contiguous(memory_format=torch.channels_last)
    if isinstance(module, nn.GELU):
        return {'GELU': lambda: F.gelu(x)}  # element-wise: the layout does not matter
    weight = module.weight.detach()
    shape = x.shape
    geometry = (module.stride, module.padding, module.dilation, module.groups)
    kernels = {'NCHW conv': lambda: F.conv2d(x, weight, None, *geometry),
               'NHWC conv': lambda: F.conv2d(x_nhwc, weight, None, *geometry)}
    if module.kernel_size == (1, 1) and module.stride == (1, 1) and module.groups == 1:
        rows = x_nhwc.permute(0, 2, 3, 1).reshape(-1, shape[1])
        columns = weight.flatten(1).t()
        kernels['GEMM'] = lambda: torch.mm(rows, columns)
    source, groups = x, module.groups  # what the blocked kernel convolves
    copies = module.out_channels // module.in_channels
    if module.groups == module.in_channels and copies > 1:
        # Several outputs per input channel: as a depthwise conv of the input repeated per output
        # (RecNeXt's deploy form does this; the repeat is a layout change, counted as free).
        repeated = x.repeat_interleave(copies, dim=1)
        repeated_nhwc = repeated.contiguous(memory_format=torch.channels_last)
        depthwise = geometry[:3] + (module.out_channels,)
        kernels['NHWC depthwise'] = lambda: F.conv2d(repeated_nhwc, weight, None, *depthwise)
        source, groups = repeated, module.out_channels
    if torch.backends.mkldnn.is_available() and isinstance(module.padding, tuple):
        blocked = _to_blocked(source)
        kernels['oneDNN blocked'] = lambda: torch.ops.mkldnn._convolution_pointwise(
            blocked, weight, None, list(module.padding), list(module.stride), list(module.dilation),
            groups, 'none', [], 'none')
    return kernels


def compute_floor(name: str, shapes, args: SpeedOptions) -> List[dict]:
    """How fast any deploy form built from these kernels could be at most.

    Each conv and GELU of one forward of the training form is run on each of
    :func:`bare_kernels`, and the fastest is kept. Then, round by round (``args.repeats``),
    the training form, the deploy form and the floor (every op once on its fastest kernel,
    times its calls) are timed in turn, so that all three see the same machine load.
    Element-wise adds, resizes and layout changes count as free, so no deploy form made of
    these kernels beats the floor: ``train / floor`` (median over rounds) bounds its speed-up.
    """
    train, deploy = both_forms(name)
    device, now = torch.device('cpu'), CLOCKS[args.clock]
    rows = []
    for batch, height, width in shapes:
        x = torch.randn(batch, 3, height, width)
        ops = []  # (part, calls, kernel name, kernel)
        for (module, shape), calls in recorded_ops(train, x).items():
            kernels = bare_kernels(module, torch.randn(shape))
            with torch.inference_mode():
                seconds = {kernel: statistics.median(found) for kernel, found in time_interleaved(
                    kernels, device, 1, 3, args.clock).items()}
            best = min(seconds, key=seconds.get)
            part = ('GELU' if isinstance(module, nn.GELU) else
                    '1x1 convs' if module.kernel_size == (1, 1) and module.groups == 1 else 'other convs')
            ops.append((part, calls, best, kernels[best]))
        rounds = collections.defaultdict(list)
        with torch.inference_mode():
            for round_index in range(args.warmup + args.repeats):
                timed = {}
                for form, model in (('train', train), ('deploy', deploy)):
                    start = now()
                    model(x)
                    timed[form] = now() - start
                parts = collections.defaultdict(float)
                for part, calls, _, kernel in ops:
                    start = now()
                    kernel()
                    parts[part] += calls * (now() - start)
                timed['floor'] = sum(parts.values())
                if round_index >= args.warmup:
                    for key, value in list(timed.items()) + list(parts.items()):
                        rounds[key].append(value)
                    rounds['bound'].append(timed['train'] / timed['floor'])
        ms = {key: 1e3 * statistics.median(values) for key, values in rounds.items() if key != 'bound'}
        chosen = collections.Counter()
        for _, calls, kernel_name, _ in ops:
            chosen[kernel_name] += calls
        parts = {part: ms[part] for part in ('1x1 convs', 'other convs', 'GELU') if part in ms}
        row = dict(model=name, batch=batch, height=height, width=width, threads=torch.get_num_threads(),
                   clock=args.clock, floor_ms=ms['floor'], floor_parts_ms=parts, fastest_kernels=dict(chosen),
                   train_ms=ms['train'], deploy_ms=ms['deploy'], deploy_speedup=ms['train'] / ms['deploy'],
                   speedup_bound=statistics.median(rounds['bound']), rounds=args.repeats)
        rows.append(row)
        print(f"{name} {batch}x{height}x{width} cpu {row['threads']}t: floor {row['floor_ms']:.0f} ms/batch ("
              + ', '.join(f'{part} {value:.0f}' for part, value in parts.items())
              + f"; kernels: {', '.join(f'{k} x{v}' for k, v in chosen.items())}) | "
              f"train {row['train_ms']:.0f} ms, deploy {row['deploy_ms']:.0f} ms ({row['deploy_speedup']:.2f}x) | "
              f"no deploy form of these kernels beats {row['speedup_bound']:.2f}x (medians of {args.repeats} "
              f"rounds)", flush=True)
    return rows


# ---- size table -----------------------------------------------------------------------
def size_row(name: str) -> dict:
    if ':' in name:
        model, fused = both_forms(name)
    else:
        model = timm.create_model(name).eval()
        fused = None
    train_params = count_params(model)
    model = fused or deploy_form(model)
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


def imagenet_weights(name: str) -> str:
    """The model-zoo cell saying where ``name``'s ImageNet weights come from."""
    entry = zoo.model(name)
    if entry is None:
        return '-'
    if entry.weights in ('release', 'timm'):
        tags = [f'`{tag}`' for tag in timm.list_pretrained(f'{name}.*')]
        where = 'release' if entry.weights == 'release' else 'timm'
        return f"{where}: {', '.join(tags)}" if tags else 'none published'
    return {'gdrive': 'Google Drive, convert', 'none': 'none published'}[entry.weights]


def configs_cell(name: str) -> str:
    """Every config of ``name`` in the table, with its method and published result."""
    entry = zoo.model(name)
    if entry is None or not entry.configs:
        return '-'
    return '<br>'.join(f'`{osp.basename(cfg.path)}` ({cfg.method}): {cfg.published_text()}'
                       for cfg in entry.configs)


def markdown_table(size_rows: List[dict], speed_rows: List[dict]) -> str:
    """The README's model-zoo table: sizes, published metrics, configs, and CPU speed if run."""
    speed = {}
    for row in speed_rows:
        if (row['batch'], row['height'], row['width']) == (8, 224, 224) and row['device'] == 'cpu':
            speed[row['model']] = row
    head = ['model', 'params (M)', 'MACs (G)', 'paper params / MACs', 'difference', 'ImageNet weights',
            'configs (method): published']
    if speed:
        first = next(iter(speed.values()))
        clock = ', CPU time' if first['clock'] == 'process' else ''
        head += [f"CPU img/s, {first['threads']} thread(s){clock}: train → deploy (bs 8, 224²)"]
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    for row in size_rows:
        paper = row['published']
        diffs = ', '.join(f'{format_number(row[k], "+.2f")} {unit}' for k, unit in (('params_diff', 'M'), ('macs_diff', 'G'))
                          if row[k] is not None)
        cells = [row['model'], f"{row['params_m']:.2f}", f"{row['macs_g']:.2f}",
                 f"{paper.get('params') or '-'} M / {paper.get('macs') or '-'} G" if paper else '-',
                 f"{diffs} ({row['difference_note']})" if diffs else '-',
                 imagenet_weights(row['model']), configs_cell(row['model'])]
        if speed:
            s = speed.get(row['model'])
            cells.append(f"{s['train']['img_per_s']['median']:.3g} → {s['deploy']['img_per_s']['median']:.3g} "
                         f"({s['deploy_speedup']:.2f}×)" if s else '-')
        lines.append('| ' + ' | '.join(cells) + ' |')
    lines.append(f'\nParams and MACs of the deploy form at 224×224, MACs counted by `{MAC_COUNTER}`.')
    return '\n'.join(lines)
