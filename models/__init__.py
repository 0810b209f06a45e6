"""The models: variants by name (registry.py), the network (network.py), the deformable layer
(deformable_conv.py) and the deformable-convolution op with its backends (deform_ops/).

Import from the modules themselves; this package imports nothing, so `models.registry` loads without torch.
"""
