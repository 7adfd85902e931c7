# Mask R-CNN + FPN, RepNeXt-M3 backbone, COCO 2017 instance segmentation.
# Schedule: 1x = 12 epochs, lr steps at epochs 8 and 11, 500-iter linear warm-up from lr x 1e-6.
# Batch: 8 GPUs x 2 img/GPU (SyncBN across GPUs), AdamW lr 2e-4, wd 0.05, 1333x800, fp32.
# Published (RepNeXt, mmdet 2.x): 40.8 box AP / 37.8 mask AP at epoch 9 of 12 (epoch 12: 40.7 / 37.7).
# The same recipe and data pipeline as RecNeXt-M3's published run (same authors, same code).
# Trained in the multi-branch form; for inference, tools/reparameterize.py collapses a
# trained checkpoint and --cfg-options model.backbone.deploy=True loads it.
# Pretrained: the authors' distilled ImageNet release, downloaded once into the torch hub
# cache; offline: --cfg-options model.backbone.init_cfg.checkpoint=PATH.
_base_ = './recnext_m3_coco.py'

model = dict(
    backbone=dict(
        type='RepNeXt',
        init_cfg=dict(
            checkpoint='https://github.com/suous/RepNeXt/releases/download/v1.0/repnext_m3_distill_300e.pth')))
