"""Shared helpers for the corpus adapters.

Every adapter returns ``Prepared(samples, rejects)``: the usable rows as ``Sample`` and every
listed row or file that could not become a sample as a ``Reject`` with a short reason code, so
nothing disappears without a reason and one bad annotation never stops a corpus.

Two kinds of problems:

* **Row-level problems** (confined to one annotation row or one media file name) are rejects:
  a row with the wrong number of fields or an unparsable clip number (``malformed_row``), a label
  outside the corpus's set (``unknown_label``), a file name that does not follow the corpus's code
  (``bad_name``), a name whose codes cannot occur together (``impossible_code``). They are raised
  inside the readers as ``RowError`` (a ``DatasetError`` with a ``reason``) and every adapter turns
  them into ``Reject(id, path, reason, detail, meta)``; ``detail`` names ``file:line`` (or the file),
  the value and what was expected, e.g. ``.../set_1.csv:7: unknown label '9'; DFEW labels are 1..7``.
  A row that cannot be parsed far enough to know its sample id gets ``<dataset>-<file>:<line>``
  (the annotation file relative to the root) as its reject id.
* **Layout problems** (root missing, an annotation file or media folder missing, a CSV without its
  header columns, an undecodable annotation file or spreadsheet, an unknown fold, subset or split)
  stop ``prepare`` with a ``DatasetError`` naming the file and what was expected.
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from emorl.data.labels import LABEL_SETS, UnknownLabelError, to_canonical
from emorl.data.manifest import Sample
from emorl.data.media import is_lfs_pointer

JUNK_NAMES = frozenset({".DS_Store", "Thumbs.db", "desktop.ini"})


class DatasetError(ValueError):
    """A corpus on disk that does not follow its official layout; the message says where and why."""


class RowError(DatasetError):
    """A problem confined to one annotation row or one file; adapters turn it into a ``Reject``.

    reason: the reject's code (malformed_row, unknown_label, bad_name, impossible_code, compound);
    where: ``file:line`` or the file; problem: the value and what was expected.
    """

    def __init__(self, reason: str, where: str, problem: str):
        super().__init__(f"{where}: {problem}")
        self.reason = reason
        self.where = where
        self.problem = problem


@dataclass
class Reject:
    """A listed row that did not become a sample.

    reason: a short code (missing, lfs_pointer, known_bad, compound, no_label, duplicate,
    malformed_row, unknown_label, bad_name, impossible_code); detail: a human sentence naming the
    file (and line); meta: what the row still tells (labels, fold, split, ...).
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
    """The dataset root as an absolute, resolved Path (so every media path built from it is
    absolute whatever the working directory); DatasetError if it is not a folder."""
    p = Path(root).expanduser()
    if not p.is_dir():
        raise DatasetError(f"{dataset}: root folder {p} does not exist or is not a folder")
    return p.resolve()


def line_id(dataset: str, root: Path, path: Path, lineno: int | None = None) -> str:
    """Stable reject id of a row that could not be parsed: ``<dataset>-<file relative to root>:<line>``."""
    try:
        rel = path.relative_to(root).as_posix()
    except ValueError:
        rel = path.name
    return f"{dataset}-{rel}" + (f":{lineno}" if lineno is not None else "")


def row_reject(sid: str, path: Path | str, err: RowError, meta: dict[str, Any] | None = None) -> Reject:
    """The ``Reject`` of a ``RowError``: its reason, and its message (file:line, value, expectation)."""
    return Reject(sid, str(path), err.reason, str(err), dict(meta or {}))


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


class CsvRows(NamedTuple):
    """What ``read_csv_dicts`` returns: the parsed rows and the rows it could not parse."""

    rows: list[tuple[int, dict[str, str]]]  # (line number, column -> stripped value)
    bad: list[tuple[int, RowError]]  # (line number, malformed_row error)


def read_csv_dicts(
    path: Path, required: Sequence[str], *, encodings: Sequence[str] = ("utf-8-sig", "cp1252")
) -> CsvRows:
    """(line number, row) for a CSV with a header holding at least ``required`` columns.

    A missing or incomplete header is a DatasetError; a row with a different number of fields than
    the header is returned in ``bad`` as a ``malformed_row`` RowError naming file and line.
    """
    rows = read_csv_rows(path, encodings=encodings)
    if not rows:
        raise DatasetError(f"{path}: empty annotation file (expected a header with {', '.join(required)})")
    head_line, header = rows[0]
    header = [h.strip() for h in header]
    missing = [c for c in required if c not in header]
    if missing:
        raise DatasetError(f"{path}:{head_line}: missing column(s) {', '.join(missing)}; header is {header}")
    out, bad = [], []
    for lineno, fields in rows[1:]:
        if len(fields) != len(header):
            bad.append(
                (
                    lineno,
                    RowError(
                        "malformed_row",
                        f"{path}:{lineno}",
                        f"malformed row: expected {len(header)} fields ({', '.join(header)}), got {len(fields)}",
                    ),
                )
            )
            continue
        out.append((lineno, dict(zip(header, (f.strip() for f in fields), strict=True))))
    return CsvRows(out, bad)


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
        return [
            (i, list(r))
            for i, r in enumerate(ws.iter_rows(values_only=True), 1)
            if any(c is not None and str(c).strip() for c in r)
        ]
    finally:
        wb.close()


# --------------------------------------------------------------------------- values


def parse_int(value: Any, where: str, what: str) -> int:
    """``value`` as an int (``"2522"``, ``2522``, ``"2522.0"``); a ``malformed_row`` RowError naming ``where``."""
    s = str(value).strip()
    if re.fullmatch(r"[+-]?\d+(\.0+)?", s):
        return int(float(s)) if "." in s else int(s)
    raise RowError("malformed_row", where, f"malformed row: {what} must be an integer, got {value!r}")


def parse_float(value: str, where: str, what: str) -> float | None:
    """``value`` as a float, None when blank; a ``malformed_row`` RowError naming ``where`` if not a number."""
    s = value.strip()
    if not s:
        return None
    try:
        return float(s)
    except ValueError:
        raise RowError("malformed_row", where, f"malformed row: {what} must be a number, got {value!r}") from None


def label_for(dataset: str, raw: str, where: str) -> str:
    """Canonical label of ``raw`` that must belong to ``dataset``'s label set; else an ``unknown_label`` RowError."""
    try:
        lab = to_canonical(str(raw), where=where)
    except UnknownLabelError:
        raise RowError(
            "unknown_label",
            where,
            f"unknown label {raw!r} for {dataset}; expected one of {', '.join(LABEL_SETS[dataset])} (or a synonym)",
        ) from None
    if lab not in LABEL_SETS[dataset]:
        raise RowError(
            "unknown_label",
            where,
            f"label {raw!r} ({lab}) is not in the {dataset} label set ({', '.join(LABEL_SETS[dataset])})",
        )
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
        raise DatasetError(
            f"{dataset}: fold {fold!r} does not exist; {dataset} has no official folds "
            "(valid folds: none, leave fold unset)"
        )


def normalise_subset(dataset: str, subset: str | None, valid: Sequence[str], default: str) -> str:
    """``subset`` lower-cased with ``_`` -> ``-``, checked against ``valid`` (None -> ``default``)."""
    if subset is None:
        return default
    s = subset.strip().lower().replace("_", "-")
    if s not in valid:
        raise DatasetError(f"{dataset}: unknown subset {subset!r}; valid subsets: {', '.join(valid)}")
    return s


def split_choices(splits: Sequence[str], groups: Mapping[str, Sequence[str]] | None = None) -> tuple[str, ...]:
    """Every value ``split=`` accepts: the corpus's splits, its group names, then ``all``."""
    return (*splits, *(groups or {}), "all")


def select_splits(
    dataset: str, split: str | None, splits: Sequence[str], groups: Mapping[str, Sequence[str]] | None = None
) -> list[str]:
    """The corpus splits named by ``split``, in the corpus's order.

    ``split`` is ``all`` (or None), one of ``splits``, a group name (MER2023 ``test`` = test1..3),
    or several of these comma-separated (``"train,test3"``). Anything else is a DatasetError listing
    the valid names.
    """
    groups = groups or {}
    if split is None:
        return list(splits)
    parts = [p.strip().lower() for p in str(split).split(",") if p.strip()]
    bad = [p for p in parts if p != "all" and p not in splits and p not in groups]
    if bad or not parts:
        raise DatasetError(
            f"{dataset}: unknown split {split!r}; valid splits: "
            f"{', '.join(split_choices(splits, groups))} (comma-separate several)"
        )
    chosen: set[str] = set()
    for p in parts:
        chosen.update(splits if p == "all" else groups.get(p, (p,)))
    return [s for s in splits if s in chosen]


def split_from_subset(
    dataset: str,
    subset: str | None,
    split: str | None,
    splits: Sequence[str],
    groups: Mapping[str, Sequence[str]] | None = None,
) -> list[str]:
    """Splits of a corpus whose ``subset`` used to name splits (MER2023, MELD, FERV39k).

    ``subset`` is still accepted as an alias of ``split`` (same names, comma-separated); giving
    both is a DatasetError, so neither is silently ignored.
    """
    if subset is None:
        return select_splits(dataset, split, splits, groups)
    if split not in (None, "all"):
        raise DatasetError(
            f"{dataset}: give the splits once, with split={split!r} or subset={subset!r} "
            f"(an alias of split for {dataset}), not both"
        )
    try:
        return select_splits(dataset, subset, splits, groups)
    except DatasetError:
        raise DatasetError(
            f"{dataset}: unknown subset {subset!r}; {dataset} has no subsets, and subset names "
            f"splits as an alias of split: {', '.join(split_choices(splits, groups))} "
            "(comma-separate several)"
        ) from None
