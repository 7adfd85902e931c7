# detection through ONNX Runtime (CPU), dynamic batch / height / width, fp32.
_base_ = ['./_base_detection.py']
backend_config = dict(type='onnxruntime')
