# Mask R-CNN + FPN, RecNeXt-M3 backbone, COCO 2017 instance segmentation.
# Schedule: 1x = 12 epochs, lr steps at epochs 8 and 11, 500-iter linear warm-up from lr x 1e-6.
# Batch: 8 GPUs x 2 img/GPU (SyncBN across GPUs), AdamW lr 2e-4, wd 0.05, 1333x800, fp32.
# Published (RecNeXt, mmdet 2.x): 41.7 box AP / 38.6 mask AP.
# The recipe is the published run's (the config in the first line of its json log), which
# tests/test_recipes.py checks fact by fact.
# Data as in the published run (the base already matches it): RGB, ImageNet mean/std,
# test at (1333, 800) keep-ratio, padded to multiples of 32, no flip.
_base_ = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['mm_efficient_backbones.detection'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='RecNeXt',
        arch='m3',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.0,
        # The published runs trained every BN (their freeze matched no layer).
        frozen_stages=-1,
        norm_eval=False,
        # The authors' ImageNet release, downloaded once into the torch hub cache (the loader
        # drops the classifier); offline: --cfg-options model.backbone.init_cfg.checkpoint=PATH.
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://github.com/suous/RecNeXt/releases/download/v1.0/recnext_m3_distill_300e.pth')),
    neck=dict(in_channels=[64, 128, 256, 512]))

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-4, betas=(0.9, 0.999), weight_decay=0.05))
# The published runs warm up from lr x 1e-6 (warmup_ratio=1e-6; mmdet's 1x base: 0.001) over 500
# iterations; mmengine's LinearLR reaches its end factor at step end - 1: end = warmup_iters + 1.
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=500 + 1),
    dict(type='MultiStepLR', begin=0, end=12, by_epoch=True, milestones=[8, 11], gamma=0.1),
]
