# UPerNet + auxiliary FCN head, ConvNeXt-B-1D++ backbone, ADE20K (150 classes), 512x512 crops.
# Backbone: oriented 1x15 + hidden 1x31 blocks cropped to [15,31]/[15,31]/[15,27]/[13,13], 1x15 stem.
# Schedule: 160k iterations, 1500-iter linear warm-up from lr x 1e-6, poly (power 1) over the
# run; AdamW lr 1e-4, wd 0.05, stage-wise lr decay 0.9 (12 layers), drop path 0.4, fp32.
# Batch: 8 GPUs x 2 img/GPU = 16 (the authors: 4 GPUs x 4 = 16). Validation: whole image at
# (2048, 512) keep-ratio, single scale.
# Published (Oriented1D, mmseg 0.x): 50.7 mIoU (multi-scale: 0.5-1.75 x (2048, 512), flip, whole
# image; `tools/test.py CONFIG CHECKPOINT --tta` runs it).
# mmseg's ConvNeXt-B UPerNet recipe is its ConvNeXt-T one with B's sizes: so is this one.
_base_ = './convnext1d_tiny_1dpp_ade20k.py'

model = dict(
    backbone=dict(arch='base', init_cfg=dict(checkpoint='checkpoints/convnext_base_1dpp_backbone.pth')),
    decode_head=dict(in_channels=[128, 256, 512, 1024]),
    auxiliary_head=dict(in_channels=512))
optim_wrapper = dict(paramwise_cfg=dict(num_layers=12))
