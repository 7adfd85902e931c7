# Mask R-CNN + FPN, ReXNet-2.2 backbone, COCO 2017 instance segmentation; as rexnet_100_coco.py
# (1200x800, 1x = 12 epochs, 8 GPUs x 2 img/GPU, SGD lr 0.02) with the wider backbone.
# Published (clovaai/rexnet README, val2017): 42.0 box AP / 37.8 mask AP, the family's best.
# No ImageNet release: clovaai's README offers ImageNet weights for 1.0/1.3/1.5/2.0/3.0 only.
# Train timm's rexnet_220 on ImageNet (or bring clovaai-layout ReXNetV1(width_mult=2.2) weights),
# then: convert_to_backbone_weights --model rexnet_220 --checkpoint YOUR_CLASSIFIER.pth
_base_ = './rexnet_100_coco.py'

model = dict(
    backbone=dict(
        arch='2.2',
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/rexnet_220_backbone.pth')),
    neck=dict(in_channels=[85, 134, 283, 406]))
