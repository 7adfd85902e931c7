# Mask R-CNN + FPN, RecNeXt-A4, COCO 2017: 1x (12 epochs), 8 GPUs x 2 img/GPU, AdamW 2e-4.
# Published: 43.5 box AP / 39.8 mask AP at epoch 10 of 12 (epoch 12: 43.2 / 39.6).
_base_ = './recnext_m3_coco.py'

model = dict(
    backbone=dict(arch='a4', init_cfg=dict(checkpoint='https://github.com/suous/RecNeXt/releases/download/v2.0/recnext_a4_distill_300e.pth')),
    neck=dict(in_channels=[64, 128, 256, 512]))
