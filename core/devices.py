"""Which device to run on: CUDA if present, else MPS, else CPU (or what the user asked for)."""

from __future__ import annotations

import torch

from core.errors import ConfigError


def pick_device(name: str | None = None, local_rank: int = 0) -> torch.device:
    """`name` ("cpu", "cuda", "cuda:1", "mps") or the best available; under torchrun, cuda:LOCAL_RANK."""
    if name is None:
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank % torch.cuda.device_count())
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and torch.cuda.is_available():  # under torchrun each rank takes its own GPU
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise ConfigError(f"unknown device {name!r}; use cpu, cuda, cuda:N or mps") from e
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} asked for, but CUDA is not available on this machine")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device {name!r} asked for, but MPS is not available on this machine")
    return device
