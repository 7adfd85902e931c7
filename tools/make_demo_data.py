"""Generate the built-in demo data, reproducibly from a seed.

    python tools/make_demo_data.py [--out data/demo] [--seed 0]

Writes two small synthetic sets of coloured shapes (square, disc, triangle) on a noisy
background, where each class has its own hue, so a from-scratch model learns them in
minutes on a CPU:

* ``coco/``: COCO-format instance segmentation (visible masks as RLE), ``train2017/``, ``val2017/``
  and ``annotations/instances_{train,val}2017.json``;
* ``ade/``: ADE20K-layout semantic segmentation, ``images/{training,validation}/*.jpg``
  and ``annotations/{training,validation}/*.png`` (0 = background, 1..3 = shapes).
"""
import argparse
import json
import math
import os
import os.path as osp

import numpy as np
from PIL import Image, ImageDraw

from mm_efficient_backbones.backbones.errors import UserError, exit_code_of, one_line

CLASSES = ('square', 'disc', 'triangle')
# Distinct hues per class, jittered per object, so colour and shape both carry the label.
CLASS_COLOURS = ((220, 60, 50), (50, 180, 70), (60, 90, 220))
SPLITS = dict(coco=dict(train=240, val=60, size=128), ade=dict(train=200, val=50, size=128))


def shape_polygon(kind: int, cx: float, cy: float, radius: float, angle: float):
    """Vertices of one object; the disc is a 32-gon so the COCO polygon is exact enough."""
    corners = {0: 4, 1: 32, 2: 3}[kind]
    start = angle + (math.pi / 4 if kind == 0 else 0)
    return [(cx + radius * math.cos(start + 2 * math.pi * i / corners),
             cy + radius * math.sin(start + 2 * math.pi * i / corners)) for i in range(corners)]


def draw_scene(rng: np.random.Generator, size: int):
    """One image and its objects: [(class index, polygon)], later objects on top."""
    base = rng.integers(90, 170, size=3)
    image = (base + rng.normal(0, 12, size=(size, size, 3))).clip(0, 255).astype(np.uint8)
    canvas = Image.fromarray(image)
    draw = ImageDraw.Draw(canvas)
    objects, centres = [], []
    for _ in range(int(rng.integers(1, 4))):
        kind = int(rng.integers(0, len(CLASSES)))
        radius = float(rng.uniform(0.1, 0.22) * size)
        for _attempt in range(20):  # keep objects mostly apart, so every one stays visible
            cx, cy = rng.uniform(radius, size - radius, size=2)
            if all(math.hypot(cx - x, cy - y) > radius + r for x, y, r in centres):
                break
        centres.append((cx, cy, radius))
        polygon = shape_polygon(kind, cx, cy, radius, float(rng.uniform(0, math.pi / 2)))
        colour = tuple(int(c) for c in np.clip(np.array(CLASS_COLOURS[kind]) + rng.integers(-25, 26, 3), 0, 255))
        draw.polygon(polygon, fill=colour)
        objects.append((kind, polygon))
    return canvas, objects


def visible_mask(objects, size: int) -> np.ndarray:
    """Label map with 0 = background and k + 1 = class k, occlusion resolved by order."""
    label = Image.new('L', (size, size), 0)
    draw = ImageDraw.Draw(label)
    for kind, polygon in objects:
        draw.polygon(polygon, fill=kind + 1)
    return np.asarray(label)


def write_coco_split(root: str, split: str, count: int, size: int, rng) -> None:
    image_dir = osp.join(root, f'{split}2017')
    os.makedirs(image_dir, exist_ok=True)
    images, annotations = [], []
    for image_id in range(1, count + 1):
        canvas, objects = draw_scene(rng, size)
        name = f'{image_id:06d}.jpg'
        canvas.save(osp.join(image_dir, name), quality=95)
        images.append(dict(id=image_id, file_name=name, width=size, height=size))
        for index, (kind, polygon) in enumerate(objects):
            # Visible part only: a later object may cover this one.
            instance = Image.new('L', (size, size), 0)
            ImageDraw.Draw(instance).polygon(polygon, fill=1)
            for _, later in objects[index + 1:]:
                ImageDraw.Draw(instance).polygon(later, fill=0)
            mask = np.asarray(instance, dtype=bool)
            if mask.sum() < 16:
                continue
            ys, xs = np.nonzero(mask)
            x0, y0, x1, y1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
            annotations.append(dict(
                id=len(annotations) + 1, image_id=image_id, category_id=kind + 1, iscrowd=0,
                bbox=[float(x0), float(y0), float(x1 - x0), float(y1 - y0)], area=float(mask.sum()),
                segmentation=_mask_to_rle(mask)))
    categories = [dict(id=i + 1, name=name) for i, name in enumerate(CLASSES)]
    os.makedirs(osp.join(root, 'annotations'), exist_ok=True)
    with open(osp.join(root, 'annotations', f'instances_{split}2017.json'), 'w') as f:
        json.dump(dict(images=images, annotations=annotations, categories=categories), f)


def _mask_to_rle(mask: np.ndarray) -> dict:
    """Uncompressed COCO RLE (column-major run lengths, starting with background)."""
    flat = mask.T.reshape(-1).astype(np.uint8)
    changes = np.flatnonzero(np.diff(np.concatenate([[0], flat, [1 - flat[-1]]])))
    counts = np.diff(np.concatenate([[0], changes])).tolist()
    return dict(counts=[int(c) for c in counts], size=[int(mask.shape[0]), int(mask.shape[1])])


def write_ade_split(root: str, split: str, count: int, size: int, rng) -> None:
    folder = dict(train='training', val='validation')[split]
    image_dir, label_dir = osp.join(root, 'images', folder), osp.join(root, 'annotations', folder)
    os.makedirs(image_dir, exist_ok=True)
    os.makedirs(label_dir, exist_ok=True)
    for index in range(count):
        canvas, objects = draw_scene(rng, size)
        stem = f'demo_{folder}_{index:05d}'
        canvas.save(osp.join(image_dir, stem + '.jpg'), quality=95)
        Image.fromarray(visible_mask(objects, size)).save(osp.join(label_dir, stem + '.png'))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', default='data/demo', help='output folder (default: data/demo)')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    return exit_code_of(lambda: make_demo_data(args.out, args.seed))


def make_demo_data(out: str, seed: int) -> None:
    """Both demo sets under ``out``, from ``seed``; an unwritable ``out`` is one line."""
    rng = np.random.default_rng(seed)
    try:
        for split in ('train', 'val'):
            write_coco_split(osp.join(out, 'coco'), split, SPLITS['coco'][split], SPLITS['coco']['size'], rng)
            write_ade_split(osp.join(out, 'ade'), split, SPLITS['ade'][split], SPLITS['ade']['size'], rng)
    except OSError as err:
        raise UserError(f'cannot write the demo data to {out}: {one_line(err)}; pass --out FOLDER') from None
    print(f'demo data written to {out}/coco (COCO instances) and {out}/ade (ADE20K layout)')


if __name__ == '__main__':
    raise SystemExit(main())
