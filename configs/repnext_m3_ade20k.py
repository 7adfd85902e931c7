# Semantic FPN, RepNeXt-M3 backbone, ADE20K (150 classes), 512x512 crops.
# Schedule: 80k iterations, poly lr (power 0.9, min_lr 1e-6), no warm-up, AdamW lr 1e-4, wd 0.05, fp32.
# Batch: 8 GPUs x 2 img/GPU = 16 (SyncBN across GPUs). The published RepNeXt runs used 4 GPUs x
# 4 img/GPU = 16 (gpu_ids=range(0, 4) in their logs; RTX 4090s, A800s for M5): the same total
# batch, lr and iterations, and 16 images per SyncBN step either way.
# Published (RepNeXt, mmseg 0.x): 40.6 mIoU (single scale).
# The same test pipeline (AlignResize to multiples of 32) as RecNeXt-M3's run.
# Inference in the deploy form: see tools/reparameterize.py.
_base_ = './recnext_m3_ade20k.py'

model = dict(
    backbone=dict(
        type='RepNeXt',
        init_cfg=dict(
            checkpoint='https://github.com/suous/RepNeXt/releases/download/v1.0/repnext_m3_distill_300e.pth')))
train_dataloader = dict(batch_size=2)  # x 8 GPUs = the published 4 x 4
