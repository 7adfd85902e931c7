"""Feature maps inside a backbone: hook modules, draw each output's channel mean next to the image.

    python tools/analysis/feature_maps.py recnext_m3 cat.jpg [--modules NAME ...] \\
        [--checkpoint PATH] [--size 224] [--out feature_maps.png]

Without ``--modules`` the modules are picked from the model's structure, by the first rule
that matches (so the rules hold for families added later):

1. recursion levels: a module with an int ``level`` and a ModuleList ``convs`` of
   ``level + 1`` convs (RecNeXt's RecConv2d): one map per level, coarsest first;
2. chunked branches: a module with two or more children made only of depthwise convs of
   the same width c, whose output has one chunk of c channels per branch, plus a leading
   identity chunk when there is one more (RepNeXt's ChunkConv: identity, small, medium,
   large kernel): one map per chunk;
3. angle groups: a module with a 1-D ``theta`` (one angle per output channel; the oriented
   1D kernels of ConvNeXt-1D): one map per angle, the mean of the channels with that angle;
4. otherwise the stage outputs listed in the model's ``feature_info``.

Of the modules a rule matches, the one drawn is the last at the highest resolution (e.g.
the last block of the first stage). A module named with ``--modules`` is expanded by the
same rules when one applies, and otherwise drawn as the mean over all its channels.
"""
import difflib
import math
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from mm_efficient_backbones.backbones.errors import UserError

from .analysis import (DPI, build_model, default_device, image_tensor, list_images,
                                   make_parent, read_image)

PANEL_INCHES = 2.5  # each panel is PANEL_INCHES * DPI pixels square
MAX_COLUMNS = 5
# Beyond this many distinct angles (e.g. learned, continuous ones) channels are binned.
MAX_ANGLE_GROUPS = 16
ANGLE_BINS = 8

Maps = List[Tuple[str, torch.Tensor]]  # (label, (h, w) map)


@dataclass
class Probe:
    """Hook ``module`` (a dotted name) and turn its (1, C, h, w) output into labelled maps;
    ``split`` returns None when the output does not have the structure the rule expects."""
    module: str
    split: Callable[[torch.Tensor], Optional[Maps]]


def channel_mean(label: str) -> Callable[[torch.Tensor], Maps]:
    return lambda out: [(label, out[0].mean(0))]


# ---- rule 1: recursion levels -------------------------------------------------------
def recursion_level_probes(name: str, module: nn.Module) -> List[Probe]:
    convs, level = getattr(module, 'convs', None), getattr(module, 'level', None)
    if not (isinstance(convs, nn.ModuleList) and isinstance(level, int) and len(convs) == level + 1):
        return []
    # convs[i] runs after (level - i) halvings: convs[0] on the coarsest map.
    return [Probe(f'{name}.convs.{i}', channel_mean(f'{name} level {level - i} (1/{2 ** (level - i)})'))
            for i in range(level + 1)]


# ---- rule 2: chunked branches ----------------------------------------------------------
def depthwise_width(module: nn.Module) -> Optional[int]:
    """The channel count when every conv inside ``module`` is depthwise and equally wide."""
    convs = [m for m in module.modules() if isinstance(m, nn.modules.conv._ConvNd)]
    widths = {m.out_channels for m in convs if m.groups == m.in_channels == m.out_channels}
    if not convs or len(widths) != 1 or any(m.groups != m.in_channels for m in convs):
        return None
    return widths.pop()


def chunk_branch_probes(name: str, module: nn.Module) -> List[Probe]:
    branches = [(child_name, depthwise_width(child)) for child_name, child in module.named_children()]
    branches = [(child_name, width) for child_name, width in branches if width]
    if len(branches) < 2 or len({width for _, width in branches}) != 1:
        return []
    width = branches[0][1]

    def split(out: torch.Tensor) -> Optional[Maps]:
        chunks, remainder = divmod(out.shape[1], width)
        if remainder or chunks not in (len(branches), len(branches) + 1):
            return None
        labels = (['identity'] if chunks == len(branches) + 1 else []) + [b for b, _ in branches]
        return [(f'{name} {label}', chunk[0].mean(0))
                for label, chunk in zip(labels, out.split(width, dim=1))]
    return [Probe(name, split)]


# ---- rule 3: angle groups ----------------------------------------------------------------
def angle_groups(theta: torch.Tensor) -> List[Tuple[str, torch.Tensor]]:
    """(label, channel indices) per distinct angle, or per angle bin when there are many."""
    angles = theta.detach().double().cpu().remainder(math.pi)
    keys = torch.round(angles * 1e4) / 1e4
    values = keys.unique()
    if len(values) > MAX_ANGLE_GROUPS:
        keys = torch.floor(angles / (math.pi / ANGLE_BINS)) * (math.pi / ANGLE_BINS)
        values = keys.unique()
    return [(f'θ={math.degrees(v):.1f}°', torch.nonzero(keys == v).flatten()) for v in values.tolist()]


def angle_group_probes(name: str, module: nn.Module) -> List[Probe]:
    theta = module._parameters.get('theta', module._buffers.get('theta'))
    if theta is None or theta.dim() != 1:
        return []
    groups = angle_groups(theta)

    def split(out: torch.Tensor) -> Optional[Maps]:
        if out.shape[1] != theta.numel():
            return None
        return [(f'{name} {label}', out[0, index].mean(0)) for label, index in groups]
    return [Probe(name, split)]


RULES = (recursion_level_probes, chunk_branch_probes, angle_group_probes)


def probes_for(name: str, module: nn.Module) -> List[Probe]:
    """What the first matching rule draws for one module (empty if none matches)."""
    for rule in RULES:
        probes = rule(name, module)
        if probes:
            return probes
    return []


# ---- running ----------------------------------------------------------------------------
def run_probes(model: nn.Module, x: torch.Tensor, probes: Sequence[Probe]) -> Dict[int, Optional[Maps]]:
    """One forward pass with every probe hooked; {probe index: maps, or None if it did not apply}.
    A probe whose module is not called in the forward pass is missing from the result."""
    modules = dict(model.named_modules())
    results: Dict[int, Optional[Maps]] = {}

    def hook_for(index: int, probe: Probe):
        def hook(_module, _inputs, output):
            if isinstance(output, torch.Tensor) and output.dim() == 4:
                results[index] = probe.split(output.detach().float().cpu())
        return hook
    handles = [modules[p.module].register_forward_hook(hook_for(i, p)) for i, p in enumerate(probes)]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return results


def stage_probes(model: nn.Module) -> List[Probe]:
    """Rule 4: the stage outputs named in ``feature_info`` (timm and our backbones have it)."""
    info = getattr(model, 'feature_info', None) or []
    info = info.info if hasattr(info, 'info') else info  # timm's FeatureInfo wraps the list
    modules = dict(model.named_modules())
    names = [entry['module'] for entry in info if isinstance(entry, dict) and entry.get('module') in modules]
    return [Probe(name, channel_mean(name)) for name in names]


def default_maps(model: nn.Module, x: torch.Tensor) -> Maps:
    """The maps of the first rule that applies, for its last module at the highest resolution."""
    for rule in RULES:
        groups = [probes for name, module in model.named_modules() if (probes := rule(name, module))]
        if not groups:
            continue
        flat = [probe for group in groups for probe in group]
        results = run_probes(model, x, flat)
        best, best_area, start = None, -1, 0
        for group in groups:
            maps = [results.get(i) for i in range(start, start + len(group))]
            start += len(group)
            if any(m is None for m in maps):
                continue
            area = max(feature.numel() for group_maps in maps for _, feature in group_maps)
            if area >= best_area:  # ties go to the later (deeper) module
                best, best_area = [item for group_maps in maps for item in group_maps], area
        if best:
            return best
    probes = stage_probes(model)
    if not probes:
        raise UserError(f'no default modules found in {type(model).__name__}: name some with --modules')
    results = run_probes(model, x, probes)
    return [item for i in range(len(probes)) for item in (results.get(i) or [])]


def named_maps(model: nn.Module, x: torch.Tensor, names: Sequence[str]) -> Maps:
    modules = dict(model.named_modules())
    probes = []
    for name in names:
        if name not in modules:
            close = difflib.get_close_matches(name, list(modules), n=3)
            hint = f' (did you mean {", ".join(close)}?)' if close else ''
            raise UserError(f"no module '{name}' in {type(model).__name__}{hint}")
        # A rule's split falls back to the plain channel mean where the output does not fit it.
        probes += [Probe(p.module, lambda out, p=p: p.split(out) or channel_mean(p.module)(out))
                   for p in probes_for(name, modules[name])] or [Probe(name, channel_mean(name))]
    results = run_probes(model, x, probes)
    missing = [p.module for i, p in enumerate(probes) if i not in results]
    if missing:
        raise UserError(f"module '{missing[0]}' did not run or gave no (N, C, H, W) output")
    return [item for i in range(len(probes)) for item in results[i]]


def draw(image, maps: Maps, out: str, title: str) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    panels = 1 + len(maps)
    columns = min(panels, MAX_COLUMNS)
    rows = math.ceil(panels / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(PANEL_INCHES * columns, PANEL_INCHES * rows),
                             dpi=DPI, squeeze=False)
    axes = axes.flatten()
    axes[0].imshow(image)
    axes[0].set_title('input', fontsize=7)
    for ax, (label, feature) in zip(axes[1:], maps):
        ax.imshow(feature.numpy(), cmap='viridis', interpolation='bilinear')
        ax.set_title(f'{label}\n{tuple(feature.shape)}', fontsize=6)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes[panels:]:
        ax.axis('off')
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=DPI)
    plt.close(fig)


def feature_maps(model_name: str, image: str, modules: Optional[Sequence[str]] = None,
                 checkpoint: Optional[str] = None, size: int = 224, out: str = 'feature_maps.png',
                 device: Optional[str] = None) -> Maps:
    """Draw the feature maps of ``model_name`` on ``image`` (or a folder's first image) into
    ``out``: of ``modules``, or of the ones the rules above pick. Returns the maps drawn."""
    if size < 0:
        raise UserError('--size must be 0 (keep) or positive')
    path = list_images(image, 1)[0]
    picture = read_image(path)
    model = build_model(model_name, checkpoint, default_device(device))
    x = image_tensor(picture, size, model.mean, model.std).to(model.device)
    maps = named_maps(model.module, x, modules) if modules else default_maps(model.module, x)
    shown = picture.resize((x.shape[-1], x.shape[-2])) if size else picture
    make_parent(out)
    draw(np.asarray(shown), maps, out, f'{model_name} ({model.weights}) on {path.name}')
    return maps
