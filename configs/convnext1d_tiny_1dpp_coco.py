# Cascade Mask R-CNN + FPN (4conv1fc heads, GIoU), ConvNeXt-T-1D++ backbone, COCO 2017.
# Backbone: oriented 1x15 + hidden 1x31 blocks cropped to [15,31]/[15,31]/[15,27]/[13,13], 1x15 stem.
# Schedule: 3x = 36 epochs, lr steps at 27 and 33, 500-iter linear warm-up from lr x 0.001 (the
# authors' base schedule_1x); multi-scale 480-800 with crop; fp32. Test: 1333x800, single scale.
# Batch: 8 GPUs x 2 img/GPU; AdamW lr 2e-4, wd 0.05, layer-wise lr decay 0.7 over 6 layers, drop path 0.4.
# Published (Oriented1D, mmdet 2.x): 51.3 box AP / 44.5 mask AP.
_base_ = 'mmdet::convnext/cascade-mask-rcnn_convnext-t-p4-w7_fpn_4conv1fc-giou_amp-ms-crop-3x_coco.py'
custom_imports = dict(imports=['mm_efficient_backbones.detection'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='ConvNeXt1D',
        arch='tiny',
        variant='1dpp',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.4,
        # From: convert_to_backbone_weights --model convnext_tiny --variant 1dpp --checkpoint <release>.pth
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/convnext_tiny_1dpp_backbone.pth')),
    neck=dict(in_channels=[96, 192, 384, 768]))

# The authors trained detection in fp32; mmdet's ConvNeXt recipe uses AMP.
optim_wrapper = dict(type='OptimWrapper')
# Their warm-up is their base schedule_1x's (500 iterations from lr x 0.001); mmdet's recipe: 1000.
# mmengine's LinearLR reaches its end factor at step end - 1: end = mmcv's warmup_iters + 1.
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500 + 1),
    dict(type='MultiStepLR', begin=0, end=36, by_epoch=True, milestones=[27, 33], gamma=0.1),
]
