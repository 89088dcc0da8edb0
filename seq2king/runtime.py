"""Process-wide settings that make training and analysis fast on the machine at hand.

Two things, both measured on the 2-core AMD EPYC CPU this project is built on
(``benchmarks/train_throughput.py``; README "Speed"):

- **Float32 matrix products.** PyTorch sends CPU float32 products to MKL, whose
  dispatcher picks its AVX2 kernels on AMD processors: 84 GFLOP/s per core here,
  against 200 for oneDNN's AVX-512 kernels on the same product. PyTorch routes
  float32 products through oneDNN only when ``torch.set_float32_matmul_precision``
  is ``"medium"``, which *allows* oneDNN to compute in bfloat16. Whether it does
  depends on the processor (on Intel AMX it does), so ``"auto"`` probes: it takes
  the oneDNN route only where its products come out at float32 accuracy (error
  within 1e-4 on a product whose bfloat16 error is ~1e-1), and otherwise keeps
  ``"highest"``. On CUDA, ``"auto"`` is ``"high"`` (TF32 tensor cores), as before.
- **The allocator.** glibc returns freed blocks above its mmap threshold to the
  kernel, and a training step frees and re-allocates hundreds of MB of activations:
  ~13,000 page faults (30 ms of system time) per step at the paper preset. Raising
  the mmap threshold to its 32 MiB maximum and the trim threshold to 1 GiB keeps
  those blocks in the heap for the next step (0 faults per step). glibc only.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys

import torch

from seq2king.errors import InputError

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "highest", "high", "medium")
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters
_allocator_tuned = False


def onednn_float32_is_exact() -> bool:
    """Whether float32 products in ``"medium"`` precision keep float32 accuracy here.

    Row 0 of ``a`` is ``1 + 2**-9 + 2**-18`` and column 0 of ``b`` is ones: bfloat16
    (8 significant bits) rounds the row to 1 and is off by 0.19 on their product,
    float32 by ~1e-5. Every other entry must be as close to the float64 product as
    the float32 ("highest") product is, within a factor of 4.
    """
    a, b = probe_matrices()
    exact = a.double() @ b.double()
    before = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("highest")
        ref = (a @ b).double()
        torch.set_float32_matmul_precision("medium")
        got = (a @ b).double()
    finally:
        torch.set_float32_matmul_precision(before)
    return float32_accurate(got, ref, exact)


def probe_matrices() -> tuple[torch.Tensor, torch.Tensor]:
    """The probe's operands: random, with row 0 of ``a`` at ``1 + 2**-9 + 2**-18`` and column 0 of ``b`` ones."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(64, 96, generator=g)
    a[0] = 1 + 2**-9 + 2**-18
    b = torch.randn(96, 80, generator=g)
    b[:, 0] = 1.0
    return a, b


def float32_accurate(got: torch.Tensor, ref: torch.Tensor, exact: torch.Tensor) -> bool:
    """The probe's test: ``got`` (the product under test) against ``ref`` (float32) and ``exact`` (float64)."""
    corner = abs(float(got[0, 0] - exact[0, 0])) < 1e-3
    return corner and bool((got - exact).abs().max() <= 4 * (ref - exact).abs().max() + 1e-6)


def set_matmul_precision(precision: str = "auto", device: str = "cpu") -> str:
    """Set ``torch.set_float32_matmul_precision``; ``"auto"`` as the module says. Returns what was set."""
    if precision not in PRECISIONS:
        raise InputError(f"matmul_precision={precision!r}: choose one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        if device != "cpu":
            precision = "high"
        else:
            precision = "medium" if onednn_float32_is_exact() else "highest"
    torch.set_float32_matmul_precision(precision)
    return precision


def tune_allocator() -> bool:
    """Keep freed activations in the heap (glibc on Linux); False where it does not apply."""
    global _allocator_tuned
    if _allocator_tuned:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        ok = libc.mallopt(_M_MMAP_THRESHOLD, 32 << 20) == 1 and libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30) == 1
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    _allocator_tuned = ok
    return ok


def configure(precision: str = "auto", device: str = "cpu") -> str:
    """Both settings, for a run on ``device`` ("cpu" or "cuda"); returns the matmul precision set."""
    tune_allocator()
    chosen = set_matmul_precision(precision, device)
    log.info("float32 matmul precision: %s%s", chosen, " (auto)" if precision == "auto" else "")
    return chosen


def trainer_device(accelerator: str | None) -> str:
    """"cuda" when Lightning's ``accelerator`` will put the model on a GPU, else "cpu"."""
    acc = str(accelerator or "auto").lower()
    if acc in ("gpu", "cuda"):
        return "cuda"
    if acc == "auto" and torch.cuda.is_available():
        return "cuda"
    return "cpu"


def wandb_mode() -> str:
    """offline unless the user is logged in; WANDB_MODE wins when set."""
    mode = os.environ.get("WANDB_MODE")
    if mode:
        return mode
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    try:  # `wandb login` stores the key in ~/.netrc
        import netrc

        return "online" if netrc.netrc().authenticators("api.wandb.ai") else "offline"
    except (OSError, netrc.NetrcParseError):
        return "offline"
