# Semantic FPN, ReXNet-1.0 backbone, ADE20K (150 classes), 512x512 crops.
# Schedule: 80k iterations, poly lr (power 0.9, min_lr 1e-6), AdamW lr 1e-4, wd 0.05, the same
# as our RecNeXt Semantic FPN configs so that the families compare directly.
# Batch: 8 GPUs x 4 img/GPU (SyncBN across GPUs).
# Published: none (the ReXNet paper reports no ADE20K result).
_base_ = 'mmseg::sem_fpn/fpn_r50_4xb4-160k_ade20k-512x512.py'  # schedule overridden below
custom_imports = dict(imports=['mm_efficient_backbones.segmentation'], allow_failed_imports=False)


model = dict(
    pretrained=None,  # the base's ResNet weights; ours come from init_cfg below
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

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05))
param_scheduler = [
    dict(type='PolyLR', power=0.9, eta_min=1e-6, begin=0, end=80000, by_epoch=False)
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=80000, val_interval=8000)
default_hooks = dict(checkpoint=dict(by_epoch=False, interval=8000))
