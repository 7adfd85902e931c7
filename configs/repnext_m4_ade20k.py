# Semantic FPN, RepNeXt-M4, ADE20K 512x512: 80k iterations, 8 GPUs x 2 img/GPU (published:
# 4 x 4, the same 16 in total), AdamW 1e-4, poly.
# Published: 43.3 mIoU.
_base_ = './repnext_m3_ade20k.py'

model = dict(
    backbone=dict(arch='m4', init_cfg=dict(checkpoint='https://github.com/suous/RepNeXt/releases/download/v1.0/repnext_m4_distill_300e.pth')),
    neck=dict(in_channels=[64, 128, 256, 512]))
