# Semantic FPN, RecNeXt-A5, ADE20K 512x512: as RecNeXt-M: 80k iterations, 8 GPUs x 4 img/GPU,
# AdamW 1e-4, poly (power 0.9).
# Published (RecNeXt logs, mmseg 0.x): 46.5 mIoU (single scale).
_base_ = './recnext_m3_ade20k.py'

model = dict(
    backbone=dict(arch='a5', init_cfg=dict(checkpoint='https://github.com/suous/RecNeXt/releases/download/v2.0/recnext_a5_distill_300e.pth')),
    neck=dict(in_channels=[80, 160, 320, 640]))
