"""Analysis tools: effective receptive fields (erf.py) and feature maps (feature_maps.py)."""
