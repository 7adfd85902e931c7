# Mask R-CNN + FPN, ReXNet-1.0 backbone, COCO 2017 instance segmentation.
# Paper setting (ReXNet, CVPR 2021): 1200x800 images, used here for training and testing.
# Schedule: 1x = 12 epochs, lr steps at epochs 8 and 11, 500-iter linear warm-up (mmdet's).
# Batch: 8 GPUs x 2 img/GPU, SGD lr 0.02, momentum 0.9, wd 1e-4 (mmdet's 1x recipe; the paper
# does not state its optimizer). BN statistics stay at their ImageNet values (norm_eval).
# Published (clovaai/rexnet README, val2017): ReXNet-1.0 38.9 box AP / 35.4 mask AP
# (ReXNet-2.2: 42.0 / 37.8).
_base_ = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['mm_efficient_backbones.detection'], allow_failed_imports=False)


image_scale = (1200, 800)

model = dict(
    backbone=dict(
        _delete_=True,
        type='ReXNet',
        arch='1.0',
        out_indices=(0, 1, 2, 3),
        frozen_stages=-1,
        norm_eval=True,
        # From: convert_to_backbone_weights --model rexnet_100 --checkpoint rexnetv1_1.0.pth
        # (clovaai's release) or a timm rexnet_100 checkpoint.
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/rexnet_100_backbone.pth')),
    neck=dict(in_channels=[38, 61, 128, 185]))

train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=image_scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='Resize', scale=image_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
