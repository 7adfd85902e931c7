# UPerNet + auxiliary FCN head, ConvNeXt-B-1D++ backbone, ADE20K (150 classes), 512x512 crops.
# Backbone: oriented 1x15 + hidden 1x31 blocks cropped to [15,31]/[15,31]/[15,27]/[13,13], 1x15 stem.
# Schedule: 160k iterations, 1500-iter linear warm-up from lr x 1e-6, poly (power 1) over the
# run; AdamW lr 1e-4, wd 0.05, stage-wise lr decay 0.9 (12 layers), drop path 0.4, fp32.
# Batch: 8 GPUs x 2 img/GPU = 16 (the authors: 4 GPUs x 4 = 16). Validation: whole image at
# (2048, 512) keep-ratio, single scale.
# Published (Oriented1D, mmseg 0.x): 50.7 mIoU (multi-scale: 0.5-1.75 x (2048, 512), flip, whole
# image; `tools/test.py CONFIG CHECKPOINT --tta` runs it).
_base_ = 'mmseg::convnext/convnext-base_upernet_8xb2-amp-160k_ade20k-512x512.py'
custom_imports = dict(imports=['mm_efficient_backbones.segmentation'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='ConvNeXt1D',
        arch='base',
        variant='1dpp',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.4,
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/convnext_base_1dpp_backbone.pth')),
    # Whole-image inference, as the authors validated and tested (their
    # _base_/models/upernet_convnext.py); mmseg's ConvNeXt recipe slides 512x512 windows.
    test_cfg=dict(_delete_=True, mode='whole'))

# fp32 as the authors trained (fp16 = None, use_fp16=False); mmseg's ConvNeXt recipe uses AMP.
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    constructor='LearningRateDecayOptimizerConstructor',
    paramwise_cfg=dict(decay_rate=0.9, decay_type='stage_wise', num_layers=12))
# mmcv 1.x's poly decays over the whole run and its warm-up multiplies it; mmengine's LinearLR
# and PolyLR chain the same way when both begin at 0 (mmseg's recipe starts the poly at 1500).
# mmengine's schedulers reach their last value at step end - 1: end = mmcv's count + 1.
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500 + 1),
    dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=0, end=160000 + 1),
]

# The published mIoU is multi-scale: the authors' --aug-test views each image at 0.5-1.75 x
# (2048, 512) keep-ratio, flipped and not, in whole mode, and averages the softmax
# probabilities of the 12 views (mmseg 0.x's aug_test; mmseg's SegTTAModel averages the same).
# `tools/test.py CONFIG CHECKPOINT --tta` (or mmseg's own tools/test.py --tta) runs it;
# mmseg's default tta_pipeline scales the original image instead.
tta_model = dict(type='SegTTAModel')
img_ratios = [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
tta_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='TestTimeAug',
         transforms=[
             [dict(type='Resize', scale=(int(2048 * r), int(512 * r)), keep_ratio=True) for r in img_ratios],
             [dict(type='RandomFlip', prob=0.0, direction='horizontal'),
              dict(type='RandomFlip', prob=1.0, direction='horizontal')],
             [dict(type='LoadAnnotations')],
             [dict(type='PackSegInputs')],
         ]),
]
