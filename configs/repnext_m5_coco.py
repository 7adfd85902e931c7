# Mask R-CNN + FPN, RepNeXt-M5, COCO 2017: 1x (12 epochs), 8 GPUs x 2 img/GPU, AdamW 2e-4, wd 0.1.
# Published: 44.7 box AP / 40.7 mask AP.
# Weight decay 0.1: what the published run used (detection/logs/repnext_m5_coco.json, line 1);
# the .py file in the RepNeXt repository says 0.05.
_base_ = './repnext_m3_coco.py'

model = dict(
    backbone=dict(arch='m5', init_cfg=dict(checkpoint='https://github.com/suous/RepNeXt/releases/download/v1.0/repnext_m5_distill_300e.pth')),
    neck=dict(in_channels=[80, 160, 320, 640]))
optim_wrapper = dict(optimizer=dict(weight_decay=0.1))
