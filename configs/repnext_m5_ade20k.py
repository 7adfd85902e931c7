# Semantic FPN, RepNeXt-M5, ADE20K 512x512: 80k iterations, 8 GPUs x 2 img/GPU (published:
# 4 A800s x 4, the same 16 in total; segmentation/logs/repnext_m5_ade20k.json), AdamW 1e-4, poly.
# Published: 45.0 mIoU.
_base_ = './repnext_m3_ade20k.py'

model = dict(
    backbone=dict(arch='m5', init_cfg=dict(checkpoint='https://github.com/suous/RepNeXt/releases/download/v1.0/repnext_m5_distill_300e.pth')),
    neck=dict(in_channels=[80, 160, 320, 640]))
