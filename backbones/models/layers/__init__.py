"""Layers shared by the families: BN folding and kernel algebra (``fusion``), the depthwise
conv with a fast CPU backward (``depthwise``), the oriented 1D conv (``oriented_conv``) and
the tracing test their fast paths use (``tracing``)."""
