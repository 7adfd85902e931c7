# Mask R-CNN + FPN, RepNeXt-M3 backbone, COCO 2017 instance segmentation.
# Schedule: 1x = 12 epochs, lr steps at epochs 8 and 11, 500-iter linear warm-up.
# Batch: 8 GPUs x 2 img/GPU (SyncBN across GPUs), AdamW lr 2e-4, wd 0.05, 1333x800.
# Published (RepNeXt, mmdet 2.x): 40.8 box AP / 37.8 mask AP.
# Trained in the multi-branch form; for inference, tools/reparameterize.py collapses a
# trained checkpoint and --cfg-options model.backbone.deploy=True loads it.
_base_ = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['detection'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='RepNeXt',
        arch='m3',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.0,
        # The published runs trained every BN (their backbone has no freezing).
        frozen_stages=-1,
        norm_eval=False,
        # From: convert_to_backbone_weights --model repnext_m3 --checkpoint <release>.pth
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/repnext_m3_backbone.pth')),
    neck=dict(in_channels=[64, 128, 256, 512]))

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-4, betas=(0.9, 0.999), weight_decay=0.05))
