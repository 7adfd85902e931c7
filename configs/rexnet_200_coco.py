# Mask R-CNN + FPN, ReXNet-2.0 backbone, COCO 2017 instance segmentation; as rexnet_100_coco.py
# (1200x800, 1x, 8 GPUs x 2 img/GPU, SGD lr 0.02) with the wider backbone.
# Published: none published for this width (ReXNet-1.0: 38.9 / 35.4, ReXNet-2.2: 42.0 / 37.8 box / mask AP).
_base_ = './rexnet_100_coco.py'

model = dict(
    backbone=dict(
        arch='2.0',
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/rexnet_200_backbone.pth')),
    neck=dict(in_channels=[77, 122, 257, 370]))
