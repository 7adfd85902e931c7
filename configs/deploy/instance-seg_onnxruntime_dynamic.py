# instance-seg through ONNX Runtime (CPU), dynamic batch / height / width, fp32.
_base_ = ['./_base_instance-seg.py']
backend_config = dict(type='onnxruntime')
