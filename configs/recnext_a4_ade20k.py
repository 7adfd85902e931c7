# Semantic FPN, RecNeXt-A4, ADE20K 512x512: as RecNeXt-M: 80k iterations, 8 GPUs x 4 img/GPU,
# AdamW 1e-4, poly (power 0.9).
# Published (RecNeXt logs, mmseg 0.x): 43.0 mIoU (single scale).
_base_ = './recnext_m3_ade20k.py'

model = dict(
    backbone=dict(arch='a4', init_cfg=dict(checkpoint='https://github.com/suous/RecNeXt/releases/download/v2.0/recnext_a4_distill_300e.pth')),
    neck=dict(in_channels=[64, 128, 256, 512]))
