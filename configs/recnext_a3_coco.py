# Mask R-CNN + FPN, RecNeXt-A3 backbone (linear-attention RecAttn), COCO 2017 instance segmentation.
# Schedule: as RecNeXt-M3: 1x = 12 epochs, lr steps at 8 and 11, 500-iter warm-up from lr x 1e-6,
# 1333x800.
# Batch: 8 GPUs x 2 img/GPU (SyncBN across GPUs), AdamW lr 2e-4, wd 0.05.
# Published (RecNeXt logs, mmdet 2.x): 42.1 box AP / 38.8 mask AP.
_base_ = './recnext_m3_coco.py'

model = dict(
    backbone=dict(arch='a3', init_cfg=dict(checkpoint='https://github.com/suous/RecNeXt/releases/download/v2.0/recnext_a3_distill_300e.pth')),
    neck=dict(in_channels=[64, 128, 256, 512]))
