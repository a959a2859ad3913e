"""The one place that turns `--device auto|cpu|cuda|cuda:N` into a device that exists here."""

from __future__ import annotations

from emocli.errors import InputError


def cuda_index(device: str) -> int:
    """The N of cuda:N (0 for plain cuda)."""
    return int(device.split(":", 1)[1]) if ":" in device else 0


def resolve_device(device: str = "auto") -> str:
    import torch

    if device in (None, "", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InputError(f"--device {device}: no CUDA device is available here", hint="use --device cpu")
        if cuda_index(device) >= torch.cuda.device_count():
            raise InputError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s)")
        return device
    if device != "cpu":
        raise InputError(f"--device {device}: expected auto, cpu, cuda or cuda:N")
    return device


def cpu_has_bf16_matrix_unit() -> bool:
    """Whether this CPU multiplies bf16 matrices in hardware (Intel AMX), where `--dtype bf16` runs ~2.4x fp32."""
    import torch

    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)  # private in torch 2.x; absent means unknown: no
    return bool(probe and probe())
