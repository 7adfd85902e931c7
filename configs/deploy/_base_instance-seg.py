# Mask R-CNN / Cascade Mask R-CNN: the graph outputs each detection's 28x28 mask logits,
# and mmdeploy's backend model pastes them into the image (export_postprocess_mask=False),
# as mmdet's own mask head does after its forward.
_base_ = ['./_base_detection.py']
onnx_config = dict(
    output_names=['dets', 'labels', 'masks'],
    dynamic_axes=dict(masks={0: 'batch', 1: 'num_dets'}))
codebase_config = dict(post_processing=dict(export_postprocess_mask=False))
