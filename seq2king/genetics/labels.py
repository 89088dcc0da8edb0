"""Population labels joined to genotype IDs by ID, never by row order.

A labels file is tab-separated with a header. The ID column is ``sample`` (or
1000 Genomes' ``Sample name``); the label column is configurable, by default
``superpopulation`` (1000 Genomes' ``Superpopulation code`` is accepted for it).
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Sequence

from seq2king.errors import FileFormatError, InputError

ID_COLUMNS = ("sample", "Sample name", "IID", "sample_id")
LABEL_ALIASES = {
    "superpopulation": ("superpopulation", "Superpopulation code", "super_pop"),
    "population": ("population", "Population code", "pop"),
}


def read_labels(
    path: str | os.PathLike,
    sample_ids: Sequence[str],
    column: str = "superpopulation",
    allow_unlabelled: bool = False,
) -> list[str | None]:
    """Labels for ``sample_ids`` (in their order) from the TSV at ``path``.

    Every labels row must name a sample in the data; every sample must have a
    label unless ``allow_unlabelled`` (then it gets ``None``).
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: labels file not found")
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh, delimiter="\t")
        try:
            header = next(reader)
        except StopIteration:
            raise FileFormatError(f"{path}: labels file is empty") from None
        rows = [r for r in reader if any(x.strip() for x in r)]
    header = [h.strip() for h in header]
    id_col = next((c for c in ID_COLUMNS if c in header), None)
    if id_col is None:
        raise FileFormatError(
            f"{path}: no sample ID column; the header needs one of {', '.join(ID_COLUMNS)} "
            f"(found: {', '.join(header)})"
        )
    candidates = LABEL_ALIASES.get(column, (column,))
    label_col = next((c for c in candidates if c in header), None)
    if label_col is None:
        raise InputError(
            f"{path}: no label column {column!r} (found: {', '.join(header)}); "
            "set the label column to one that exists"
        )
    i_id, i_lab = header.index(id_col), header.index(label_col)
    labels = dict(sample_values(path, rows, len(header), i_id, i_lab, set(sample_ids)))
    missing = [s for s in sample_ids if s not in labels]
    if missing and not allow_unlabelled:
        raise InputError(
            f"{path}: {len(missing)} sample(s) have no label, e.g. {missing[0]!r}; "
            "label every sample or drop them from the data"
        )
    return [labels.get(s) for s in sample_ids]


def sample_values(path, rows, n_header: int, i_id: int, i_val: int, known, first_line: int = 2):
    """``(sample, value)`` of each row (stripped), in order: a short row, a sample not in
    ``known`` or a sample given twice is an error naming the line."""
    seen: set[str] = set()
    for lineno, r in enumerate(rows, first_line):
        if len(r) <= max(i_id, i_val):
            raise FileFormatError(f"{path}: line {lineno} has {len(r)} fields, the header has {n_header}")
        sid, value = r[i_id].strip(), r[i_val].strip()
        if sid not in known:
            raise InputError(f"{path}: line {lineno}: sample {sid!r} is not in the genotype data")
        if sid in seen:
            raise FileFormatError(f"{path}: line {lineno}: sample {sid!r} appears twice")
        seen.add(sid)
        yield sid, value


def _canonical(column: str) -> str:
    """``population`` for 1000 Genomes' ``Population code`` and the like."""
    return next((name for name, aliases in LABEL_ALIASES.items() if column in aliases), column)


def read_label_levels(
    path: str | os.PathLike,
    sample_ids: Sequence[str],
    column: str = "superpopulation",
) -> dict[str, list[str]]:
    """Every categorical label column of the TSV at ``path``, ``{name: labels in sample order}``.

    ``column`` comes first (it must label every sample, as :func:`read_labels` checks).
    Another column counts as a level when it labels every sample and has between 2 and
    n/2 distinct values (so ID-like and constant columns are not levels); a column that
    groups people exactly as an earlier one (``Population name`` beside ``Population
    code``) is left out. Known aliases get their short names (``population``).
    """
    levels = {column: read_labels(path, sample_ids, column=column)}
    with open(path, newline="", encoding="utf-8") as fh:
        header = [h.strip() for h in next(csv.reader(fh, delimiter="\t"))]
    taken = {c for c in LABEL_ALIASES.get(column, (column,))} | set(ID_COLUMNS)
    partitions = [_partition(levels[column])]
    for col in header:
        name = _canonical(col)
        if col in taken or name in levels:
            continue
        labels = read_labels(path, sample_ids, column=col, allow_unlabelled=True)
        values = [x for x in labels if x]
        if len(values) < len(labels) or not 2 <= len(set(values)) <= len(values) / 2:
            continue
        part = _partition(labels)
        if part in partitions:
            continue
        partitions.append(part)
        levels[name] = labels
    return levels


def _partition(labels: Sequence[str]) -> tuple:
    first: dict[str, int] = {}
    return tuple(first.setdefault(x, len(first)) for x in labels)
