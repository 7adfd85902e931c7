# Cascade Mask R-CNN + FPN (4conv1fc heads, GIoU), ConvNeXt-B-2D backbone, COCO 2017.
# Backbone: the ConvNeXt baseline: dense 7x7 blocks.
# Schedule: 3x = 36 epochs, lr steps at 27 and 33, 500-iter linear warm-up from lr x 0.001 (the
# authors' base schedule_1x); multi-scale 480-800 with crop; fp32. Test: 1333x800, single scale.
# Batch: 8 GPUs x 2 img/GPU; AdamW lr 2e-4, wd 0.05, layer-wise lr decay 0.8 over 12 layers, drop path 0.7.
# Published (Oriented1D, mmdet 2.x): 52.4 box AP / 45.2 mask AP.
_base_ = './convnext1d_base_1dpp_coco.py'

model = dict(backbone=dict(variant='2d', init_cfg=dict(checkpoint='checkpoints/convnext_base_2d_backbone.pth')))
