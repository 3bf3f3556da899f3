"""Shared helpers for the corpus adapters.

Every adapter returns ``Prepared(samples, rejects)``: the usable rows as ``Sample`` and every
listed row that could not become a sample as a ``Reject`` (missing media, Git-LFS stub, known bad
file, compound label, no label, duplicate), so nothing disappears without a reason.

Bad *annotations* are not rejects but errors: ``DatasetError`` names the file (and line) and what
was expected, e.g. ``.../set_1.csv:7: unknown label '9'``.
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from emorl.data.labels import LABEL_SETS, UnknownLabelError, to_canonical
from emorl.data.manifest import Sample
from emorl.data.media import is_lfs_pointer

JUNK_NAMES = frozenset({".DS_Store", "Thumbs.db", "desktop.ini"})


class DatasetError(ValueError):
    """A corpus on disk that does not follow its official layout; the message says where and why."""


@dataclass
class Reject:
    """A listed row that did not become a sample.

    reason: a short code (missing, lfs_pointer, known_bad, compound, no_label, duplicate);
    detail: a human sentence; meta: what the row still tells (labels, fold, split, ...).
    """

    id: str
    path: str
    reason: str
    detail: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"id": self.id, "path": self.path, "reason": self.reason}
        if self.detail:
            d["detail"] = self.detail
        if self.meta:
            d["meta"] = self.meta
        return d


class Prepared(NamedTuple):
    """What an adapter returns: ``samples, rejects = prepare(...)``."""

    samples: list[Sample]
    rejects: list[Reject]


# --------------------------------------------------------------------------- paths


def check_root(root: str | os.PathLike, dataset: str) -> Path:
    """The dataset root as a Path; DatasetError if it is not a folder."""
    p = Path(root).expanduser()
    if not p.is_dir():
        raise DatasetError(f"{dataset}: root folder {p} does not exist or is not a folder")
    return p


def is_junk(name: str) -> bool:
    """macOS resource forks (``._x``), hidden files and OS droppings."""
    return name.startswith(".") or name in JUNK_NAMES


def find_path(root: Path, candidates: Sequence[str], *, what: str, kind: str = "file") -> Path:
    """First of ``root/candidate`` that exists as a ``kind`` ("file" or "dir").

    Raises DatasetError naming every path that was tried.
    """
    found = find_optional(root, candidates, kind=kind)
    if found is None:
        tried = "\n  ".join(str(root / c) for c in candidates)
        raise DatasetError(f"{what} not found; expected one of:\n  {tried}")
    return found


def find_optional(root: Path, candidates: Sequence[str], *, kind: str = "file") -> Path | None:
    """Like ``find_path`` but None when none exists."""
    test = Path.is_dir if kind == "dir" else Path.is_file
    for c in candidates:
        p = root / c
        if test(p):
            return p
    return None


def index_files(directory: Path, exts: Iterable[str]) -> dict[str, Path]:
    """Map file stem -> path for the files of ``directory`` with one of ``exts`` (junk skipped).

    When two files share a stem, the extension listed first in ``exts`` wins.
    """
    order = {e.lower(): i for i, e in enumerate(exts)}
    best: dict[str, tuple[int, Path]] = {}
    with os.scandir(directory) as it:
        for entry in it:
            if is_junk(entry.name) or not entry.is_file():
                continue
            stem, ext = os.path.splitext(entry.name)
            rank = order.get(ext.lower())
            if rank is None:
                continue
            if stem not in best or rank < best[stem][0]:
                best[stem] = (rank, Path(entry.path))
    return {k: v for k, (_, v) in best.items()}


def index_dirs(directory: Path) -> dict[str, Path]:
    """Map sub-folder name -> path (junk skipped)."""
    with os.scandir(directory) as it:
        return {e.name: Path(e.path) for e in it if e.is_dir() and not is_junk(e.name)}


def media_problem(path: Path) -> tuple[str, str] | None:
    """(reason, detail) when a listed media path cannot be used as is, else None. Never decodes."""
    if not path.exists():
        return "missing", "file not found"
    if path.is_file() and is_lfs_pointer(path):
        return "lfs_pointer", "Git-LFS pointer stub, not media: run `git lfs pull` in the dataset"
    return None


def probe_has_audio(path: Path) -> tuple[bool | None, str | None]:
    """(has an audio stream, error) by opening the container header only (no decoding)."""
    import av

    try:
        with av.open(str(path)) as container:
            return bool(container.streams.audio), None
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as e:
        return None, f"{type(e).__name__}: {e}"


# --------------------------------------------------------------------------- reading annotations


def read_text(
    path: Path,
    encodings: Sequence[str] = ("utf-8-sig",),
    accept: Callable[[str], bool] | None = None,
) -> tuple[str, str]:
    """(text, encoding) with the first encoding that decodes strictly (and passes ``accept``)."""
    if not path.is_file():
        raise DatasetError(f"{path}: annotation file not found")
    data = path.read_bytes()
    for enc in encodings:
        try:
            text = data.decode(enc)
        except UnicodeDecodeError:
            continue
        if accept is None or accept(text):
            return text, enc
    raise DatasetError(f"{path}: cannot decode the file with any of {', '.join(encodings)}")


def read_csv_rows(
    path: Path, *, delimiter: str = ",", encodings: Sequence[str] = ("utf-8-sig", "cp1252")
) -> list[tuple[int, list[str]]]:
    """(line number, fields) for every non-blank CSV record; the line is where the record starts."""
    text, _ = read_text(path, encodings)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    rows: list[tuple[int, list[str]]] = []
    start = 1
    try:
        for fields in reader:
            if any(f.strip() for f in fields):
                rows.append((start, fields))
            start = reader.line_num + 1
    except csv.Error as e:
        raise DatasetError(f"{path}:{reader.line_num}: malformed CSV ({e})") from None
    return rows


def read_csv_dicts(
    path: Path, required: Sequence[str], *, encodings: Sequence[str] = ("utf-8-sig", "cp1252")
) -> list[tuple[int, dict[str, str]]]:
    """(line number, row) for a CSV with a header holding at least ``required`` columns.

    A row with a different number of fields than the header is an error naming file and line.
    """
    rows = read_csv_rows(path, encodings=encodings)
    if not rows:
        raise DatasetError(f"{path}: empty annotation file (expected a header with {', '.join(required)})")
    head_line, header = rows[0]
    header = [h.strip() for h in header]
    missing = [c for c in required if c not in header]
    if missing:
        raise DatasetError(f"{path}:{head_line}: missing column(s) {', '.join(missing)}; header is {header}")
    out = []
    for lineno, fields in rows[1:]:
        if len(fields) != len(header):
            raise DatasetError(f"{path}:{lineno}: malformed row: expected {len(header)} fields "
                               f"({', '.join(header)}), got {len(fields)}")
        out.append((lineno, dict(zip(header, (f.strip() for f in fields), strict=True))))
    return out


def read_xlsx_rows(path: Path) -> list[tuple[int, list[Any]]]:
    """(row number, cell values) of the first sheet of an .xlsx file, blank rows skipped."""
    from openpyxl import load_workbook
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        wb = load_workbook(path, read_only=True, data_only=True)
    except (InvalidFileException, OSError, KeyError, ValueError) as e:
        raise DatasetError(f"{path}: cannot read spreadsheet ({type(e).__name__}: {e})") from None
    try:
        ws = wb.worksheets[0]
        return [(i, list(r)) for i, r in enumerate(ws.iter_rows(values_only=True), 1)
                if any(c is not None and str(c).strip() for c in r)]
    finally:
        wb.close()


# --------------------------------------------------------------------------- values


def parse_int(value: Any, where: str, what: str) -> int:
    """``value`` as an int (``"2522"``, ``2522``, ``"2522.0"``); DatasetError naming ``where``."""
    s = str(value).strip()
    if re.fullmatch(r"[+-]?\d+(\.0+)?", s):
        return int(float(s)) if "." in s else int(s)
    raise DatasetError(f"{where}: malformed row: {what} must be an integer, got {value!r}")


def parse_float(value: str, where: str, what: str) -> float | None:
    """``value`` as a float, None when blank; DatasetError naming ``where`` if not a number."""
    s = value.strip()
    if not s:
        return None
    try:
        return float(s)
    except ValueError:
        raise DatasetError(f"{where}: malformed row: {what} must be a number, got {value!r}") from None


def label_for(dataset: str, raw: str, where: str) -> str:
    """Canonical label of ``raw`` that must belong to ``dataset``'s label set."""
    try:
        lab = to_canonical(str(raw), where=where)
    except UnknownLabelError:
        raise DatasetError(f"{where}: unknown label {raw!r} for {dataset}; "
                           f"expected one of {', '.join(LABEL_SETS[dataset])} (or a synonym)") from None
    if lab not in LABEL_SETS[dataset]:
        raise DatasetError(f"{where}: label {raw!r} ({lab}) is not in the {dataset} label set "
                           f"({', '.join(LABEL_SETS[dataset])})")
    return lab


def strip_media_ext(name: str) -> str:
    """``"00025.mp4"`` -> ``"00025"``; names without a media extension are returned unchanged."""
    stem, ext = os.path.splitext(name.strip())
    return stem if ext.lower() in {".mp4", ".avi", ".flv", ".mkv", ".mov", ".webm", ".wav", ".mp3"} else name.strip()


# --------------------------------------------------------------------------- folds and subsets


def select_folds(dataset: str, fold: int | None, valid: Sequence[int]) -> list[int]:
    """``[fold]`` if it exists, every valid fold for None; DatasetError naming the valid folds."""
    if fold is None:
        return list(valid)
    if isinstance(fold, bool) or not isinstance(fold, int) or fold not in valid:
        raise DatasetError(f"{dataset}: fold {fold!r} does not exist; valid folds: {', '.join(map(str, valid))}")
    return [fold]


def require_no_fold(dataset: str, fold: int | None) -> None:
    """Datasets without official folds accept only fold=None."""
    if fold is not None:
        raise DatasetError(f"{dataset}: fold {fold!r} does not exist; {dataset} has no official folds "
                           "(valid folds: none, leave fold unset)")


def normalise_subset(dataset: str, subset: str | None, valid: Sequence[str], default: str) -> str:
    """``subset`` lower-cased with ``_`` -> ``-``, checked against ``valid`` (None -> ``default``)."""
    if subset is None:
        return default
    s = subset.strip().lower().replace("_", "-")
    if s not in valid:
        raise DatasetError(f"{dataset}: unknown subset {subset!r}; valid subsets: {', '.join(valid)}")
    return s


def split_list(dataset: str, subset: str | None, valid: Sequence[str]) -> list[str]:
    """Splits named by ``subset`` (comma-separated, e.g. ``"train,test1"``); None -> all of ``valid``."""
    if subset is None:
        return list(valid)
    parts = [p.strip().lower() for p in subset.split(",") if p.strip()]
    bad = [p for p in parts if p not in valid]
    if bad or not parts:
        raise DatasetError(f"{dataset}: unknown subset {subset!r}; valid subsets: {', '.join(valid)} "
                           "(comma-separate several)")
    return list(dict.fromkeys(parts))

