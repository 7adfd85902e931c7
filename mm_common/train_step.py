"""The cost of one detector / segmentor training step beside the same task's ResNet-50
base (``benchmark --train-step``): forward + backward in this process, interleaved."""
import os.path as osp
import statistics
from typing import List

import torch

from mm_efficient_backbones.backbones.benchmarking import time_interleaved
from mm_efficient_backbones.backbones.errors import UserError

RESNET50_BASE = {'mmdet': 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py',
                 'mmseg': 'mmseg::sem_fpn/fpn_r50_4xb4-160k_ade20k-512x512.py'}


def _build_mm_model(config, scope: str):
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    if '::' in config:  # a config of the installed mmdet / mmseg package
        from mmengine.hub import get_config
        cfg = get_config(config)
    else:
        cfg = Config.fromfile(config)
    if cfg.get('custom_imports'):
        from mmengine.utils import import_modules_from_strings
        import_modules_from_strings(**cfg.custom_imports)
    init_default_scope(scope)
    registry = __import__(f'{scope}.registry', fromlist=['MODELS']).MODELS
    model_cfg = cfg.model
    model_cfg.pop('pretrained', None)
    model_cfg.backbone.init_cfg = None  # random init: the cost does not depend on the weights
    if model_cfg.get('data_preprocessor') is None and cfg.get('data_preprocessor'):
        model_cfg.data_preprocessor = cfg.data_preprocessor
    from mmengine.model import revert_sync_batchnorm
    model = revert_sync_batchnorm(registry.build(model_cfg))  # one process: BN, as the runner does
    from mmengine.logging import MMLogger
    MMLogger.get_current_instance().setLevel('WARNING')  # init_weights lists every tensor
    model.init_weights()
    return model


def _num_classes(model) -> int:
    head = model.decode_head if hasattr(model, 'decode_head') else model.roi_head.bbox_head
    return head.num_classes


def _train_batch(scope: str, size: int, num_classes: int, num_images: int = 2):
    """A random batch with ground truth at ``size``², as the data loader would give."""
    gen = torch.Generator().manual_seed(0)
    if scope == 'mmdet':
        from mmdet.testing import demo_mm_inputs
        return demo_mm_inputs(batch_size=num_images, image_shapes=[(3, size, size)] * num_images,
                              num_items=[5] * num_images, num_classes=num_classes, with_mask=True)
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    samples = []
    for _ in range(num_images):
        sample = SegDataSample(metainfo=dict(img_shape=(size, size), ori_shape=(size, size),
                                             pad_shape=(size, size), scale_factor=(1.0, 1.0)))
        sample.gt_sem_seg = PixelData(data=torch.randint(0, num_classes, (1, size, size), generator=gen))
        samples.append(sample)
    images = [torch.randint(0, 256, (3, size, size), generator=gen, dtype=torch.uint8) for _ in range(num_images)]
    return dict(inputs=images, data_samples=samples)


def train_step_cost(config: str, device: str = 'cpu', size: int = 512, repeats: int = 3,
                    clock: str = 'wall') -> List[dict]:
    """Seconds of one training step (forward + backward, 2 images of ``size``²) with
    ``config``'s backbone and with the same task's ResNet-50 base, interleaved."""
    try:
        import mmdet  # noqa: F401
        import mmseg  # noqa: F401
    except ImportError as err:
        raise UserError(f'--train-step needs mmdet and mmseg ({err}); '
                         f'install the [mm] extras (make setup)') from None
    if not osp.isfile(config):
        raise UserError(f'config not found: {config}')
    text = open(config).read()
    scope = 'mmseg' if 'mmseg::' in text else 'mmdet'
    models = {osp.basename(config): _build_mm_model(config, scope),
              'resnet50': _build_mm_model(RESNET50_BASE[scope], scope)}
    device = torch.device(device)
    batch = _train_batch(scope, size, _num_classes(models[osp.basename(config)]))

    def runner(model):
        model.to(device).train()

        def run():
            data = model.data_preprocessor(batch, True)
            losses = model(**data, mode='loss')
            loss, _ = model.parse_losses(losses)
            loss.backward()
            model.zero_grad(set_to_none=True)
        return run
    runners = {name: runner(model) for name, model in models.items()}
    times = time_interleaved(runners, device, 1, repeats, clock)
    rows = []
    for name, seconds in times.items():
        rows.append(dict(task=scope, config=config, backbone=name, images=2, size=size,
                         device=device.type, seconds_median=statistics.median(seconds),
                         seconds_min=min(seconds), seconds_max=max(seconds)))
        print(f"train step {scope} {name:<28} 2x{size}² {device.type}: "
              f"{statistics.median(seconds):.2f} s ({min(seconds):.2f}-{max(seconds):.2f})", flush=True)
    return rows
