# mmdet end-to-end export (NMS inside the graph), shared by the detection and
# instance-segmentation configs. The RPN and R-CNN thresholds come from the model's
# test_cfg; these are mmdeploy's fallbacks for heads without one.
_base_ = ['./_base_onnx.py']
onnx_config = dict(
    output_names=['dets', 'labels'],
    dynamic_axes=dict(_delete_=True,
                      input={0: 'batch', 2: 'height', 3: 'width'},
                      dets={0: 'batch', 1: 'num_dets'},
                      labels={0: 'batch', 1: 'num_dets'}))
codebase_config = dict(
    type='mmdet',
    task='ObjectDetection',
    model_type='end2end',
    post_processing=dict(
        score_threshold=0.05,
        confidence_threshold=0.005,
        iou_threshold=0.5,
        max_output_boxes_per_class=200,
        pre_top_k=5000,
        keep_top_k=100,
        background_label_id=-1))
