# UPerNet, RecNeXt-M3 backbone, ADE20K (150 classes), 512x512 crops.
# Schedule: 160k iterations, 1500-iter linear warm-up then poly (power 1.0), AdamW lr 6e-5,
# wd 0.01 (the usual ConvNeXt/Swin UPerNet recipe). Batch: 8 GPUs x 2 img/GPU = 16.
# Published: none for RecNeXt-M3 + UPerNet; expect about +1-2 mIoU over Semantic FPN.
_base_ = 'mmseg::upernet/upernet_r50_4xb4-160k_ade20k-512x512.py'
custom_imports = dict(imports=['mm_efficient_backbones.segmentation'], allow_failed_imports=False)

model = dict(
    pretrained=None,  # the base's ResNet weights; ours come from init_cfg below
    backbone=dict(
        _delete_=True,
        type='RecNeXt',
        arch='m3',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.1,
        frozen_stages=-1,
        norm_eval=False,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://github.com/suous/RecNeXt/releases/download/v1.0/recnext_m3_distill_300e.pth')),
    decode_head=dict(in_channels=[64, 128, 256, 512]),
    auxiliary_head=dict(in_channels=256))

train_dataloader = dict(batch_size=2)
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=6e-5, betas=(0.9, 0.999), weight_decay=0.01))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=1500, end=160000),
]
