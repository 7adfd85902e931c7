# The ONNX export every deploy config shares (mmdeploy 1.3.1 reads `onnx_config`).
# opset 11 is the one mmdeploy's mmdet/mmseg rewriters are written for; the graph uses
# standard ops only (Conv, RoiAlign, NonMaxSuppression, Resize, ...), no mmdeploy custom op.
# Batch, height and width are dynamic: one file serves any image size.
onnx_config = dict(
    type='onnx',
    export_params=True,
    keep_initializers_as_inputs=False,
    opset_version=11,
    save_file='end2end.onnx',
    input_names=['input'],
    output_names=['output'],
    input_shape=None,
    dynamic_axes=dict(input={0: 'batch', 2: 'height', 3: 'width'},
                      output={0: 'batch', 2: 'height', 3: 'width'}))
