"""Effective receptive fields (ERF) of backbones, side by side, by RepLKNet's method.

    python tools/analysis/erf.py --models recnext_m3 repnext_m3 convnext_tiny_1d \\
        --images DIR --num-images 50 --out erf.png [--checkpoint PATH|none ...] [--stage 3] [--json]

Method (Ding et al., RepLKNet, CVPR 2022, appendix): each image is resized to
``--size`` x ``--size`` (1024 by default) and normalised. Let y be the chosen stage's
output (``--stage``, default the last; stages are the model's feature levels as in timm's
``feature_info``). The score is y's centre pixel summed over channels,
``s = sum_c y[c, h // 2, w // 2]``; its gradient w.r.t. the input, in absolute value and
summed over the three colour channels, is that image's contribution map. Maps are
averaged over the images (the raw map, saved as ``.npy``), then shown as
``log10(map + 1)`` divided by its maximum. (RepLKNet clamps the score and the gradient at
zero with ReLU; we take the absolute gradient, so negative evidence counts too.)

Area ratios: on the log-scaled, normalised map M of size H x W, for t in 20/30/50/99 %,
the side ``k`` of the smallest square window centred at (H // 2, W // 2) whose sum is at
least t of the sum of M, and the ratio ``k * k / (H * W)`` of the image it covers. A larger
ratio at a high t means that contributions reach further from the centre.

Writes OUT (PNG: one heatmap per model with its name, weights and ratios), OUT_STEM_<model>.npy
(the raw mean maps) and, with ``--json``, OUT_STEM.json (ratios and settings). One image is
processed at a time, with no parameter gradients, so peak memory is one forward and
backward pass of one image.
"""
import json
import os.path as osp
import re
import sys
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from mm_efficient_backbones.backbones.errors import UserError

from .analysis import (DPI, LoadedModel, build_model, check_readable, checkpoints_for,
                                   default_device, image_tensor, list_images, make_parent, read_image)

THRESHOLDS = (0.2, 0.3, 0.5, 0.99)
PANEL_INCHES = 4  # each model's heatmap is PANEL_INCHES * DPI pixels square


def input_gradient(stage_output, x: torch.Tensor) -> torch.Tensor:
    """|d(sum over channels of the centre pixel of the stage output) / d input|, summed over
    input channels: an (H, W) map for one image x of shape (1, C, H, W)."""
    x = x.detach().requires_grad_(True)
    y = stage_output(x)
    centre = y[:, :, y.shape[-2] // 2, y.shape[-1] // 2].sum()
    (grad,) = torch.autograd.grad(centre, x)
    return grad.abs().sum((0, 1)).cpu()


def log_normalised(raw: np.ndarray) -> np.ndarray:
    """log10(raw + 1) scaled to a maximum of 1 (an all-zero map stays zero)."""
    scaled = np.log10(raw.astype(np.float64) + 1)
    peak = scaled.max()
    return scaled / peak if peak > 0 else scaled


def centred_window(data: np.ndarray, threshold: float) -> Dict[str, float]:
    """The smallest centred square window holding at least ``threshold`` of the map's sum:
    its side (pixels) and the share of the image it covers (see the module docstring)."""
    height, width = data.shape
    total = data.sum()
    cy, cx = height // 2, width // 2
    # Half-sides up to the farthest image edge from the centre, so the largest window
    # holds the whole map.
    for half in range(max(cy, cx, height - cy, width - cx) + 1):
        window = data[max(cy - half, 0):cy + half + 1, max(cx - half, 0):cx + half + 1]
        if total <= 0 or window.sum() >= threshold * total:
            side = 2 * half + 1
            return dict(side=side, area_ratio=min(side, height) * min(side, width) / (height * width))
    raise AssertionError('unreachable: the largest window holds the whole map')


def area_ratios(data: np.ndarray, thresholds: Sequence[float] = THRESHOLDS) -> Dict[str, dict]:
    return {f'{round(t * 100)}%': centred_window(data, t) for t in thresholds}


def accumulate_erf(stage_output, tensors, progress=None) -> np.ndarray:
    """Mean contribution map over ``tensors`` (an iterable of (1, C, H, W) inputs), one at a time."""
    total, count = None, 0
    for x in tensors:
        grad = input_gradient(stage_output, x).double()
        if not torch.isfinite(grad).all():
            continue  # a diverging random-init model: skip the image, as RepLKNet does
        total = grad if total is None else total + grad
        count += 1
        if progress is not None:
            progress.update(1)
    if total is None:
        raise UserError('every image gave a non-finite gradient; try a checkpoint or fewer stages')
    return (total / count).numpy()


def safe_name(text: str) -> str:
    return re.sub(r'[^A-Za-z0-9_.-]+', '_', text)


def draw(results: List[dict], out: str, stage_label: str) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(results), figsize=(PANEL_INCHES * len(results), PANEL_INCHES),
                             dpi=DPI, squeeze=False)
    for ax, result in zip(axes[0], results):
        ax.imshow(result['map'], cmap='RdYlGn', vmin=0, vmax=1, interpolation='nearest')
        ratios = '  '.join(f"{k}:{v['area_ratio']:.3f}" for k, v in result['ratios'].items())
        ax.set_title(f"{result['model']} ({result['weights']})\nstage {result['stage']}, "
                     f"{result['num_images']} img\n{ratios}", fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f'effective receptive field ({stage_label}), area ratios at 20/30/50/99 %', fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=DPI)
    plt.close(fig)


def run_model(model: LoadedModel, images, stage: int, size: int) -> dict:
    from tqdm import tqdm
    tensors = (image_tensor(read_image(p), size, model.mean, model.std).to(model.device) for p in images)
    with tqdm(total=len(images), desc=f'ERF {model.name}', unit='img', file=sys.stderr) as progress:
        raw = accumulate_erf(lambda x: model.stage_output(x, stage), tensors, progress)
    normalised = log_normalised(raw)
    return dict(model=model.name, weights=model.weights, stage=stage, num_images=len(images),
                raw=raw, map=normalised, ratios=area_ratios(normalised))


def effective_receptive_fields(models: Sequence[str], images: str, num_images: int = 50, out: str = 'erf.png',
                               checkpoints: Optional[Sequence[str]] = None, stage: int = -1, size: int = 1024,
                               device: Optional[str] = None, write_json: bool = False) -> List[dict]:
    """The ERF of each of ``models`` on the first ``num_images`` of ``images``: writes OUT (the
    figure), OUT_STEM_<model>.npy and, with ``write_json``, OUT_STEM.json (see the module
    docstring); returns one dict per model (ratios, weights, stage, file paths). Every input is
    checked before the first gradient."""
    if num_images < 1 or size < 1:
        raise UserError('--num-images and --size must be positive')
    checkpoints = checkpoints_for(models, checkpoints)
    paths = list_images(images, num_images)
    check_readable(paths)
    device = default_device(device)
    loaded = [build_model(m, c, device) for m, c in zip(models, checkpoints)]
    stages = [model.check_stage(stage) for model in loaded]
    if len(paths) < num_images:
        print(f'note: {len(paths)} images in {images}, fewer than --num-images {num_images}', file=sys.stderr)
    results = [run_model(model, paths, index, size) for model, index in zip(loaded, stages)]
    make_parent(out)
    stem = osp.splitext(out)[0]
    for result in results:
        path = f"{stem}_{safe_name(result['model'])}.npy"
        np.save(path, result['raw'].astype(np.float32))
        result['npy'] = path
    draw(results, out, 'last stage' if stage == -1 else f'stage {stage}')
    if write_json:
        summary = [dict(model=r['model'], weights=r['weights'], stage=r['stage'], num_images=r['num_images'],
                        size=size, ratios=r['ratios'], npy=r['npy']) for r in results]
        with open(f'{stem}.json', 'w') as f:
            json.dump(summary, f, indent=2)
        for result in results:
            result['json'] = f'{stem}.json'
    return results
