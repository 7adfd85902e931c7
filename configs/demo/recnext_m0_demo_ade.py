# Demo: Semantic FPN with a from-scratch RecNeXt-M0 on the synthetic shapes set in ADE20K
# layout (tools/make_demo_data.py -> data/demo/ade), sized for a 2-core CPU in a few minutes.
# Schedule: 200 iterations, batch 1 process x 8 img of 128x128, AdamW lr 1e-3, poly.
# Expected: mIoU >= 50 on the demo val set (see README for the measured figure).
_base_ = '../recnext_m3_ade20k.py'

data_root = 'data/demo/ade'
metainfo = dict(classes=('background', 'square', 'disc', 'triangle'),
                palette=[(120, 120, 120), (220, 60, 50), (50, 180, 70), (60, 90, 220)])
crop_size = (128, 128)
channels = 64

model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(arch='m0', init_cfg=None),
    neck=dict(in_channels=[40, 80, 160, 320], out_channels=channels),
    decode_head=dict(in_channels=[channels] * 4, channels=channels, num_classes=4))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='RandomResize', scale=crop_size, ratio_range=(0.75, 1.5), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
dataset = dict(type='BaseSegDataset', data_root=data_root, metainfo=metainfo,
               img_suffix='.jpg', seg_map_suffix='.png', reduce_zero_label=False)
train_dataloader = dict(
    batch_size=8, num_workers=1, persistent_workers=True,
    dataset=dict(_delete_=True, **dataset, pipeline=train_pipeline,
                 data_prefix=dict(img_path='images/training', seg_map_path='annotations/training')))
val_dataloader = dict(
    batch_size=1, num_workers=1, persistent_workers=True,
    dataset=dict(_delete_=True, **dataset, pipeline=test_pipeline,
                 data_prefix=dict(img_path='images/validation', seg_map_path='annotations/validation')))
test_dataloader = val_dataloader

max_iters = 200
train_cfg = dict(max_iters=max_iters, val_interval=100)
optim_wrapper = dict(optimizer=dict(lr=1e-3))
param_scheduler = [dict(type='PolyLR', power=0.9, eta_min=1e-6, begin=0, end=max_iters, by_epoch=False)]
default_hooks = dict(
    logger=dict(interval=20),
    checkpoint=dict(by_epoch=False, interval=100, max_keep_ckpts=1))
randomness = dict(seed=0)  # a reproducible demo
