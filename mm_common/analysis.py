"""What the analysis tools (tools/analysis/) and tools/infer.py share: finding and reading
images, building a model by name (with or without a checkpoint), and the figure size rule.
Nothing here uses mm APIs; it lives in mm_common so that no tool imports another.

A model is named either by timm name (``import backbones`` registers ours; any timm model
works) or as an mm backbone ``TYPE:ARCH[:VARIANT]`` (e.g. ``RecNeXt:m0``,
``ConvNeXt1D:tiny:2d``), read by the one resolver that export and benchmark use
(``backbones.models.specs``). Our families are built as their dense-prediction backbone, so
``--checkpoint`` takes a released classifier or a converted backbone alike
(``MultiScaleBackbone.load_pretrained``); other timm models load a classifier checkpoint
through timm's own pretrained-file path.
"""
import os
import os.path as osp
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

import timm
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from mm_efficient_backbones.backbones.errors import UserError, one_line
from mm_efficient_backbones.backbones.models.multiscale import MultiScaleBackbone
from mm_efficient_backbones.backbones.models.specs import resolve

IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.webp', '.tif', '.tiff')
# A model without a checkpoint gets the same random init every time, whatever else runs.
RANDOM_INIT_SEED = 0
# Pixels per inch of every figure: a panel of PANEL_INCHES is PANEL_INCHES * DPI pixels.
DPI = 100


# ---- images ------------------------------------------------------------------------
def list_images(path: str, limit: Optional[int] = None) -> List[Path]:
    """An image file, or the images in a folder (sorted by name), at most ``limit``."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise UserError(f'no such image or folder: {path}')
    images = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise UserError(f'no images ({", ".join(IMAGE_SUFFIXES)}) in {path}')
    return images[:limit] if limit else images


def read_image(path: Path):
    """The image as RGB PIL, or a one-line error naming the file."""
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(path) as image:
            return image.convert('RGB')
    except UnidentifiedImageError:
        raise UserError(f'cannot read image {path}: not an image file, or a damaged one') from None
    except (OSError, ValueError) as err:
        raise UserError(f'cannot read image {path}: {one_line(err)}') from None


def check_readable(paths: Sequence[Path]) -> None:
    """Fail before a long run, not in the middle of it, when an image cannot be read."""
    for path in paths:
        read_image(path)


def image_tensor(image, size: Optional[int], mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """(1, 3, H, W) normalised; resized (bicubic) to size x size when size is given."""
    from PIL import Image
    if size:
        image = image.resize((size, size), Image.BICUBIC)
    array = np.asarray(image, dtype=np.float32) / 255.0
    array = (array - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0).contiguous()


# ---- models ------------------------------------------------------------------------
@dataclass
class LoadedModel:
    """A model ready for analysis: ``module`` is what feature maps hook (names as in the
    checkpoints), ``stage_output(x, stage)`` is the chosen stage's feature map."""
    name: str
    module: nn.Module
    num_stages: int
    stage_output: Callable[[torch.Tensor, int], torch.Tensor]
    weights: str  # 'random init' or the checkpoint's file name
    device: str = 'cpu'
    mean: Tuple[float, ...] = IMAGENET_DEFAULT_MEAN
    std: Tuple[float, ...] = IMAGENET_DEFAULT_STD

    def check_stage(self, stage: int) -> int:
        """``stage`` as an index 0..num_stages-1 (negative counts from the end)."""
        if not self.num_stages:
            raise UserError(f'{self.name} lists no stages (no feature_info), so it has no stage output to use')
        if not -self.num_stages <= stage < self.num_stages:
            raise UserError(f'--stage {stage} is out of range for {self.name}: it has {self.num_stages} '
                            f'stages, use 0..{self.num_stages - 1} (or -1 for the last)')
        return stage % self.num_stages


def _check_checkpoint(checkpoint: Optional[str]) -> Optional[str]:
    if checkpoint and not osp.isfile(checkpoint):
        raise UserError(f'checkpoint not found: {checkpoint}')
    return checkpoint


def _ready(module: nn.Module, device: str) -> nn.Module:
    # Gradients are only ever wanted w.r.t. the input: parameters need none.
    return module.to(device).eval().requires_grad_(False)


def default_device(device: Optional[str] = None) -> str:
    return device or ('cuda' if torch.cuda.is_available() else 'cpu')


def build_model(spec: str, checkpoint: Optional[str] = None, device: str = 'cpu') -> LoadedModel:
    """Build ``spec`` (timm name or ``TYPE:ARCH``) on ``device``, random init unless ``checkpoint``."""
    checkpoint = _check_checkpoint(checkpoint)
    weights = osp.basename(checkpoint) if checkpoint else 'random init'
    resolved = resolve(spec, any_timm=True)
    torch.manual_seed(RANDOM_INIT_SEED)
    if resolved.target is not None:
        backbone: MultiScaleBackbone = resolved.target.build()  # every stage out
        if checkpoint:
            backbone.load_pretrained(checkpoint)
        _ready(backbone, device)

        def stage_output(x, stage):
            *_, last = backbone.forward_stages(x, stage)
            return last
        return LoadedModel(spec, backbone, len(backbone.feature_info), stage_output, weights, device)
    return _build_timm(spec, checkpoint, weights, device)


def _build_timm(name: str, checkpoint: Optional[str], weights: str, device: str) -> LoadedModel:
    """Any timm model: the classifier for hooks, features_only (one stage) for stage outputs."""
    load = dict(pretrained=True, pretrained_cfg_overlay=dict(file=checkpoint)) if checkpoint else {}
    try:
        classifier = timm.create_model(name, **load)
    except (RuntimeError, KeyError, ValueError, OSError) as err:
        raise UserError(f'cannot load {checkpoint} into {name}: {one_line(err)}') from None
    _ready(classifier, device)
    num_stages = len(classifier.feature_info) if hasattr(classifier, 'feature_info') else 0
    extractors = {}

    def stage_output(x, stage):
        # timm prunes everything after out_indices, so only the needed part runs.
        if stage not in extractors:
            torch.manual_seed(RANDOM_INIT_SEED)  # the classifier's random init, when there is no checkpoint
            extractors[stage] = _ready(
                timm.create_model(name, features_only=True, out_indices=(stage,), **load), device)
        return extractors[stage](x)[0]
    cfg = getattr(classifier, 'pretrained_cfg', {}) or {}
    return LoadedModel(name, classifier, num_stages, stage_output, weights, device,
                       tuple(cfg.get('mean', IMAGENET_DEFAULT_MEAN)), tuple(cfg.get('std', IMAGENET_DEFAULT_STD)))


def checkpoints_for(models: Sequence[str], checkpoints: Optional[Sequence[str]]) -> List[Optional[str]]:
    """One checkpoint (or None: random init) per model; 'none' skips one model."""
    if not checkpoints:
        return [None] * len(models)
    if len(checkpoints) != len(models):
        raise UserError(f'--checkpoint got {len(checkpoints)} paths for {len(models)} models: give one per '
                        "model, in the same order ('none' for random init)")
    return [None if c.lower() == 'none' else c for c in checkpoints]


def make_parent(path: str) -> None:
    parent = osp.dirname(osp.abspath(path))
    os.makedirs(parent, exist_ok=True)
