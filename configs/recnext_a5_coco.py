# Mask R-CNN + FPN, RecNeXt-A5, COCO 2017: 1x (12 epochs), 8 GPUs x 2 img/GPU, AdamW 2e-4.
# Published: 44.4 box AP / 40.3 mask AP at epoch 9 of 12 (epoch 12: 44.0 / 40.1).
_base_ = './recnext_m3_coco.py'

model = dict(
    backbone=dict(arch='a5', init_cfg=dict(checkpoint='https://github.com/suous/RecNeXt/releases/download/v2.0/recnext_a5_distill_300e.pth')),
    neck=dict(in_channels=[80, 160, 320, 640]))
