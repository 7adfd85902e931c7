# UPerNet + auxiliary FCN head, ConvNeXt-T-2D backbone, ADE20K (150 classes), 512x512 crops.
# Backbone: the ConvNeXt baseline: dense 7x7 blocks.
# Schedule: 160k iterations, 1500-iter linear warm-up from lr x 1e-6, poly (power 1) over the
# run; AdamW lr 1e-4, wd 0.05, stage-wise lr decay 0.9 (6 layers), drop path 0.4, fp32.
# Batch: 8 GPUs x 2 img/GPU = 16 (the authors: 4 GPUs x 4 = 16). Validation: whole image at
# (2048, 512) keep-ratio, single scale.
# Published (Oriented1D, mmseg 0.x): 46.6 mIoU (multi-scale: 0.5-1.75 x (2048, 512), flip, whole
# image; `tools/test.py CONFIG CHECKPOINT --tta` runs it).
_base_ = './convnext1d_tiny_1dpp_ade20k.py'

model = dict(backbone=dict(variant='2d', init_cfg=dict(checkpoint='checkpoints/convnext_tiny_2d_backbone.pth')))
