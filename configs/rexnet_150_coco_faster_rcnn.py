# Faster R-CNN + FPN, ReXNet-1.5 backbone, COCO 2017 detection; as rexnet_100_coco_faster_rcnn.py
# (1200x800, 1x, 8 GPUs x 2 img/GPU, SGD lr 0.02) with the wider backbone.
# Published: none published for this width (ReXNet-1.0: 38.5, ReXNet-2.2: 41.5 box AP).
_base_ = './rexnet_100_coco_faster_rcnn.py'

model = dict(
    backbone=dict(
        arch='1.5',
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/rexnet_150_backbone.pth')),
    neck=dict(in_channels=[58, 92, 193, 277]))
