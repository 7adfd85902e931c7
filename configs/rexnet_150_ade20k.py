# Semantic FPN, ReXNet-1.5 backbone, ADE20K; as rexnet_100_ade20k.py (80k iterations,
# AdamW lr 1e-4, 8 GPUs x 4 img/GPU, the RecNeXt test pipeline) with the wider backbone.
# Published: none (the ReXNet paper reports no ADE20K result).
_base_ = './rexnet_100_ade20k.py'

model = dict(
    backbone=dict(
        arch='1.5',
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/rexnet_150_backbone.pth')),
    neck=dict(in_channels=[58, 92, 193, 277]))
