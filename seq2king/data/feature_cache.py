"""Token features of a streamed cohort, cached beside its genotype store.

Computing them at biobank scale (KING to the panel, the genomic relationship, PCs:
passes over the whole store) takes minutes; ``analyze.py`` and a resumed run need
exactly the same numbers. They are kept as ``features-KEY.npy`` (float32, people x
features) with a sealed manifest ``features-KEY.json`` holding the scaler, the
feature blocks, the input lines and the ``.npy``'s checksum. ``KEY`` digests
everything the features depend on (the store's manifest, so the genotypes' bytes;
the people, split, panel and settings). A manifest that does not hold, a ``.npy``
that does not load or has another shape, or a non-finite value: one warning line,
and the features are computed again.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np

from seq2king.fileio import atomic_files
from seq2king.integrity import check_manifest, write_manifest

log = logging.getLogger(__name__)

VERSION = 2  # 2: a sealed manifest with the .npy's checksum


def feature_key(**depends_on) -> str:
    """The cache key of features that depend on ``depends_on`` (JSON-serialisable values, numpy arrays)."""
    plain = {k: hashlib.sha256(v.tobytes()).hexdigest() if isinstance(v, np.ndarray) else v
             for k, v in depends_on.items()}
    return hashlib.sha256(json.dumps({"v": VERSION, **plain}, sort_keys=True).encode()).hexdigest()[:16]


def _paths(folder: Path, key: str) -> tuple[Path, Path]:
    return folder / f"features-{key}.npy", folder / f"features-{key}.json"


def load_features(folder: Path, key: str, people: int) -> tuple[np.ndarray, dict] | None:
    """``(features, meta)`` cached under ``key``, checked; None (with a warning when a cache was there but
    cannot be used) when they must be computed."""
    npy, manifest = _paths(folder, key)
    meta, why = check_manifest(manifest, {"features.npy": npy})
    if meta is not None:
        try:
            features = np.load(npy, allow_pickle=False)
        except (OSError, ValueError) as e:
            why = f"{npy.name} does not load ({type(e).__name__})"
        else:
            if features.ndim != 2 or features.shape[0] != people:
                why = f"{npy.name} has shape {features.shape}, not {people} people"
            elif not np.isfinite(features).all():
                why = f"{npy.name} holds non-finite values"
            elif not all(k in meta for k in ("scaler", "target_mean", "target_top", "feature_blocks", "input_lines")):
                why = f"{manifest.name} lacks some of its fields"
            else:
                log.info("token features read from %s", npy)
                return features, meta
    if why != "not built":
        log.warning("cached token features %s cannot be used (%s): computing them again", npy, why)
    return None


def save_features(folder: Path, key: str, features: np.ndarray, **meta) -> None:
    """Write ``features`` and their sealed manifest (``meta``: JSON-serialisable), the manifest last."""
    npy, manifest = _paths(folder, key)
    manifest.unlink(missing_ok=True)
    with atomic_files(npy) as (tmp,):
        with open(tmp, "wb") as fh:
            np.save(fh, features)
    write_manifest(manifest, {"features.npy": npy}, **meta)
