from models.deform_ops import deform_conv2d  # noqa: F401
from models.deformable_conv import DeformableConv  # noqa: F401
from models.network import MODEL_NAMES, ConvNet, count_parameters  # noqa: F401
