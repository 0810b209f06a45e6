import torch

from utils.errors import UserError


def resolve_device(name):
    """"auto" -> CUDA when available, else CPU; an explicit CUDA device must exist."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f'device "{name}" was asked for but CUDA is not available here; set "device": "auto" or "cpu"')
    return device
