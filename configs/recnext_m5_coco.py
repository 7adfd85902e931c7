# Mask R-CNN + FPN, RecNeXt-M5, COCO 2017: 1x (12 epochs), 8 GPUs x 2 img/GPU, AdamW 2e-4.
# Published: 44.6 box AP / 40.6 mask AP at epoch 9 of 12 (epoch 12: 44.1 / 40.1).
# Data pipeline (as the published run) and the release-URL init_cfg: see recnext_m3_coco.py.
_base_ = './recnext_m3_coco.py'

model = dict(
    backbone=dict(
        arch='m5',
        init_cfg=dict(
            checkpoint='https://github.com/suous/RecNeXt/releases/download/v1.0/recnext_m5_distill_300e.pth')),
    neck=dict(in_channels=[80, 160, 320, 640]))
