# segmentation through ONNX Runtime (CPU), dynamic batch / height / width, fp32.
_base_ = ['./_base_segmentation.py']
backend_config = dict(type='onnxruntime')
