# Faster R-CNN + FPN, ReXNet-0.9 backbone, COCO 2017 detection; as rexnet_100_coco_faster_rcnn.py
# (1200x800, 1x = 12 epochs, 8 GPUs x 2 img/GPU, SGD lr 0.02) with the narrower backbone.
# Published (clovaai/rexnet README, val2017): 38.0 box AP (60.6 AP50, 40.8 AP75).
# No ImageNet release: clovaai's README offers ImageNet weights for 1.0/1.3/1.5/2.0/3.0 only.
# Train timm's rexnet_090 on ImageNet (or bring clovaai-layout ReXNetV1(width_mult=0.9) weights),
# then: convert_to_backbone_weights --model rexnet_090 --checkpoint YOUR_CLASSIFIER.pth
_base_ = './rexnet_100_coco_faster_rcnn.py'

model = dict(
    backbone=dict(
        arch='0.9',
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/rexnet_090_backbone.pth')),
    neck=dict(in_channels=[36, 56, 117, 168]))
