# Mask R-CNN + FPN, RepNeXt-M4, COCO 2017: 1x (12 epochs), 8 GPUs x 2 img/GPU, AdamW 2e-4.
# Published: 42.9 box AP / 39.1 mask AP at epoch 9 of 12 (epoch 12: 42.7 / 39.1).
_base_ = './repnext_m3_coco.py'

model = dict(
    backbone=dict(arch='m4', init_cfg=dict(checkpoint='https://github.com/suous/RepNeXt/releases/download/v1.0/repnext_m4_distill_300e.pth')),
    neck=dict(in_channels=[64, 128, 256, 512]))
