# Demo: the RecNeXt-M0 demo (Semantic FPN on the synthetic shapes set, same data, schedule
# and batch) with a from-scratch RepNeXt-M0 backbone in its multi-branch training form.
# Expected: no published figure; the demo tests run one training iteration of it.
_base_ = './recnext_m0_demo_ade.py'

model = dict(backbone=dict(type='RepNeXt'))
