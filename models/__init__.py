from models.deform_ops import backend_note, deform_conv2d, resolve_backend  # noqa: F401
from models.deformable_conv import DeformableConv  # noqa: F401
from models.network import MODEL_NAMES, ConvNet, count_parameters  # noqa: F401
