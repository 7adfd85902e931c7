# Semantic FPN, ReXNet-1.0 backbone, ADE20K (150 classes), 512x512 crops.
# Our recipe (no ADE20K run is published for ReXNet): RecNeXt's Semantic FPN one, inherited
# whole so that the families compare directly: 80k iterations, poly lr (power 0.9, min_lr 1e-6),
# AdamW lr 1e-4, wd 0.05, fp32; test at (2048, 512) keep-ratio resized to multiples of 32.
# Batch: 8 GPUs x 4 img/GPU (SyncBN across GPUs).
# Published: none (the ReXNet paper reports no ADE20K result).
_base_ = './recnext_m3_ade20k.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='ReXNet',
        arch='1.0',
        out_indices=(0, 1, 2, 3),
        frozen_stages=-1,
        norm_eval=False,
        # From: convert_to_backbone_weights --model rexnet_100 --checkpoint rexnetv1_1.0.pth
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/rexnet_100_backbone.pth')),
    neck=dict(in_channels=[38, 61, 128, 185]))
