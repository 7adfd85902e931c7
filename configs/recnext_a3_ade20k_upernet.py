# UPerNet, RecNeXt-A3, ADE20K 512x512: 160k iterations, 8 GPUs x 2 img/GPU, AdamW 6e-5, poly.
# Published: none for RecNeXt + UPerNet.
_base_ = './recnext_m3_ade20k_upernet.py'

model = dict(
    backbone=dict(arch='a3', drop_path_rate=0.1,
                  init_cfg=dict(checkpoint='https://github.com/suous/RecNeXt/releases/download/v2.0/recnext_a3_distill_300e.pth')),
    decode_head=dict(in_channels=[64, 128, 256, 512]),
    auxiliary_head=dict(in_channels=256))
