"""Reading a checkpoint a user points at: ``weights_only=True``, and one line when it is not one.

A truncated download, an empty file, a text file, a checkpoint of another
program or of another model configuration each end the command with one line
naming the file, never a traceback from deep inside ``torch.load``.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from seq2king.errors import InputError


def read_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """The checkpoint dict at ``path`` (``torch.load(..., weights_only=True)``), checked to be a Lightning
    checkpoint with ``state_dict`` and ``hyper_parameters``."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: is a folder, not a checkpoint file")
    if not path.exists():
        raise InputError(f"{path}: checkpoint not found")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: empty file, not a checkpoint")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch.load fails on a foreign file with whatever its parser meets (IndexError too)
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:120]
        raise InputError(f"{path}: not a readable checkpoint, truncated or not a PyTorch file ({first})") from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict) \
            or not isinstance(ckpt.get("hyper_parameters"), dict):
        raise InputError(f"{path}: not a seq2king checkpoint (it has no state_dict and hyper_parameters)")
    return ckpt


def check_fits(ckpt: dict, module: torch.nn.Module, path: str | os.PathLike) -> None:
    """Stop when ``ckpt``'s weights are not ``module``'s (another model, another configuration)."""
    own = module.state_dict()
    theirs = ckpt["state_dict"]
    missing = sorted(set(own) - set(theirs))
    extra = sorted(set(theirs) - set(own))
    shaped = [k for k in own if k in theirs and tuple(theirs[k].shape) != tuple(own[k].shape)]
    if missing or extra or shaped:
        k = (missing or extra or shaped)[0]
        what = "lacks" if missing else "has an extra" if extra else "has another shape for"
        raise InputError(f"{path}: a checkpoint of another model: it {what} {k!r} "
                         f"({len(missing)} missing, {len(extra)} extra, {len(shaped)} of another shape); "
                         "use the model config it was trained with")
