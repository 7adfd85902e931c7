# UPerNet, RepNeXt-M3 backbone, ADE20K (150 classes), 512x512 crops.
# Schedule: 160k iterations, 1500-iter linear warm-up then poly (power 1.0), AdamW lr 6e-5,
# wd 0.01 (the usual ConvNeXt/Swin UPerNet recipe). Batch: 8 GPUs x 2 img/GPU = 16.
# Published: none for RepNeXt-M3 + UPerNet (its Semantic FPN: 40.6 mIoU).
# Inference in the deploy form: see tools/reparameterize.py.
_base_ = './recnext_m3_ade20k_upernet.py'

model = dict(
    backbone=dict(
        type='RepNeXt',
        init_cfg=dict(
            checkpoint='https://github.com/suous/RepNeXt/releases/download/v1.0/repnext_m3_distill_300e.pth')))
