# UPerNet + auxiliary FCN head, ConvNeXt-B-1D++ backbone, ADE20K (150 classes), 512x512 crops.
# Backbone: oriented 1x15 + hidden 1x31 blocks cropped to [15,31]/[15,31]/[15,27]/[13,13], 1x15 stem.
# Schedule: 160k iterations, 1500-iter linear warm-up then poly; AdamW lr 1e-4, wd 0.05,
# stage-wise lr decay 0.9 (12 layers), drop path 0.4. Batch: 8 GPUs x 2 img/GPU = 16.
# Published (Oriented1D, mmseg 0.x): 50.7 mIoU (multi-scale).
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
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/convnext_base_1dpp_backbone.pth')))
