# mmseg whole-image inference; the argmax is part of the graph, so the output is the
# label map (batch x 1 x H x W).
_base_ = ['./_base_onnx.py']
codebase_config = dict(type='mmseg', task='Segmentation', with_argmax=True)
