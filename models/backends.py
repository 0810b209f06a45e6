"""The deformable op's backends by name (models/deform_ops implements them; all compute the same function on the
same parameters; "triton" is not measured on a GPU yet, and `auto` never picks it). No torch here, so a config that names one is checked before torch loads."""
BACKENDS = ("torchvision", "gather", "cpp", "triton")
