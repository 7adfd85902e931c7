# segmentation through OpenVINO (CPU), dynamic batch / height / width, fp32: the IR is converted
# from the ONNX file by openvino.convert_model (mm_common/deploy.py) and compiled with the
# f32 inference-precision hint, because OpenVINO would otherwise run bf16 on AMX CPUs. The ONNX
# graph is the ONNX Runtime one (mmdeploy's standard-op rewriters, not its OpenVINO-only ops).
_base_ = ['./_base_segmentation.py']
backend_config = dict(type='openvino', precision='f32')
