# Mask R-CNN + FPN, RecNeXt-M4, COCO 2017: 1x (12 epochs), 8 GPUs x 2 img/GPU, AdamW 2e-4.
# Published: 43.5 box AP / 39.7 mask AP at epoch 10 of 12 (epoch 12: 43.2 / 39.5).
# Data pipeline (as the published run) and the release-URL init_cfg: see recnext_m3_coco.py.
_base_ = './recnext_m3_coco.py'

model = dict(
    backbone=dict(
        arch='m4',
        init_cfg=dict(
            checkpoint='https://github.com/suous/RecNeXt/releases/download/v1.0/recnext_m4_distill_300e.pth')),
    neck=dict(in_channels=[64, 128, 256, 512]))
