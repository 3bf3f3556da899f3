"""Hub-format copies of image emotion sets: parquet files with image bytes in the Hugging Face
``datasets`` layout, read through ``datasets`` from a local folder (no network).

This is how EMO-R3's released data comes (``fuyyy74/EmoSet2k``: 2,100 train / 2,000 test images
sampled from EmoSet-118K; columns ``images`` (a list of images), ``problem``, ``course_grained``,
``intensity``, ``answer``)::

    EmoSet2k/                     a snapshot of the hub repository
      data/train-00000-of-00001.parquet
      data/test-00000-of-00001.parquet

Split files are found as ``data/<split>-*.parquet``, ``data/<split>/*.parquet``,
``<split>-*.parquet``, ``<split>/*.parquet`` or ``<split>.parquet``.

Columns: the image column is ``images`` (a list holding one image, as EMO-R3's) or ``image``; an
image is ``{"bytes", "path"}`` (HF's ``Image`` feature, read undecoded), raw bytes, or a path
relative to the root. The label column is ``answer`` (EMO-R3) or ``label`` (a string or a
``ClassLabel`` index), its word kept as ``meta.answer``. Other string columns are kept in
``meta.fields`` (``problem``, ``course_grained``, ``intensity``, ...).

**Where the image bytes go.** Samples need a file path, so each image is written once to
``image_dir/<sha256[:2]>/<sha256><ext>`` (``emorl data prepare`` uses ``images/`` beside the
manifest): named by the SHA-256 of its bytes, the extension sniffed from the bytes (else the stored
name's, else ``.bin``; ``data check`` decodes by content either way), written atomically (a
temporary file, then a rename), and skipped when a file of that name and size is already there.
So preparing twice, or preparing ``train`` and ``test`` into one folder, writes each image once;
identical images share one file, which the leakage guard then sees as the same media.
``meta.sha256`` records the hash.

Registered corpora: ``emoset2k`` (dataset ``emoset``, Mikels-8 in EmoSet's words) and
``emotion6-hub`` (dataset ``emotion6``). Sample ids are ``<name>-<split>-<row>`` (the row index
within the split, 5 digits); ``meta.source`` is ``<split>:<row>``.

Rejects: ``no_image`` (no image, or an image with neither bytes nor path), ``several_images``
(emorl samples hold one image), ``unknown_label`` (a label outside the dataset's set),
``malformed_row`` (a label that is not a string or an index), ``missing`` / ``bad_path`` (a
path-only image that is not there or points outside the root).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, NamedTuple

from emorl.data.corpora.common import (
    DatasetError,
    Prepared,
    Reject,
    RowError,
    check_root,
    label_for,
    media_problem,
    require_no_fold,
    row_reject,
    select_splits,
    split_choices,
)
from emorl.data.corpora.image_common import image_sample, inside
from emorl.data.images import IMAGE_EXTS, sniff_format
from emorl.utils import atomic_write_bytes


class HubSpec(NamedTuple):
    dataset: str  # label set and Sample.dataset
    splits: tuple[str, ...]
    description: str


HUB = {
    "emoset2k": HubSpec("emoset", ("train", "test"), "EMO-R3's EmoSet2k (fuyyy74/EmoSet2k)"),
    "emotion6-hub": HubSpec("emotion6", ("train", "test"), "an Emotion6 hub copy (e.g. fuyyy74/Emotion6_2step)"),
}
SPLIT_PATTERNS = ("data/{s}-*.parquet", "data/{s}/*.parquet", "{s}-*.parquet", "{s}/*.parquet", "{s}.parquet")
IMAGE_COLUMNS = ("images", "image")
LABEL_COLUMNS = ("answer", "label")
SUBSETS: tuple[str, ...] = ()


def split_choices_of(name: str) -> tuple[str, ...]:
    return split_choices(HUB[name].splits)


def parquet_files(root: Path, split: str) -> list[Path]:
    """The parquet files of ``split`` under ``root`` (first pattern that matches)."""
    for pattern in SPLIT_PATTERNS:
        found = sorted(p for p in root.glob(pattern.format(s=split)) if p.is_file())
        if found:
            return found
    return []


def extract(data: bytes, image_dir: Path, hint: str = "") -> Path:
    """Write image bytes once, content-addressed (module docstring); returns the file."""
    digest = hashlib.sha256(data).hexdigest()
    hint_ext = os.path.splitext(hint)[1].lower()
    ext = sniff_format(data) or (hint_ext if hint_ext in IMAGE_EXTS else ".bin")
    dest = image_dir / digest[:2] / f"{digest}{ext}"
    if not (dest.is_file() and dest.stat().st_size == len(data)):
        atomic_write_bytes(dest, data)
    return dest


def _images(value: Any, where: str) -> list[tuple[bytes | None, str | None]]:
    """(bytes, path) of each image in one cell."""
    items = value if isinstance(value, list) else [] if value is None else [value]
    out = []
    for x in items:
        if isinstance(x, dict):
            out.append((x.get("bytes") or None, x.get("path") or None))
        elif isinstance(x, (bytes, bytearray)):
            out.append((bytes(x) or None, None))
        elif isinstance(x, str):
            out.append((None, x or None))
        else:
            raise RowError(
                "malformed_row", where, f"image must be bytes, a path or {{bytes, path}}, got {type(x).__name__}"
            )
    return out


def _undecoded(feature: Any) -> Any:
    """The same feature with images left as ``{bytes, path}`` (None when it holds no images)."""
    import datasets

    if isinstance(feature, datasets.Image):
        return datasets.Image(decode=False)
    inner = getattr(feature, "feature", None)
    if isinstance(inner, datasets.Image):
        return datasets.List(datasets.Image(decode=False))
    return None


def _label(value: Any, names: list[str] | None, dataset: str, where: str) -> tuple[str, str]:
    """(canonical label, the raw word) of a label cell."""
    if isinstance(value, int) and not isinstance(value, bool) and names:
        if not 0 <= value < len(names):
            raise RowError("unknown_label", where, f"label index {value} outside 0..{len(names) - 1}")
        value = names[value]
    if not isinstance(value, str) or not value.strip():
        raise RowError("malformed_row", where, f"label must be a non-empty string, got {value!r}")
    return label_for(dataset, value.strip(), where), value.strip()


def _load(files: list[Path], split: str, where: str):
    """A streaming ``datasets`` iterable over ``files`` (nothing cached), its image and label columns."""
    import datasets

    try:
        ds = datasets.load_dataset("parquet", data_files={split: [str(f) for f in files]}, split=split, streaming=True)
    except Exception as e:  # noqa: BLE001 (pyarrow / datasets raise many types for a bad file)
        raise DatasetError(f"{where}: cannot read the parquet files ({type(e).__name__}: {e})") from None
    cols = list(ds.features or {})
    img = next((c for c in IMAGE_COLUMNS if c in cols), None)
    lab = next((c for c in LABEL_COLUMNS if c in cols), None)
    if img is None or lab is None:
        raise DatasetError(
            f"{where}: expected an image column ({' or '.join(IMAGE_COLUMNS)}) and a label column "
            f"({' or '.join(LABEL_COLUMNS)}); columns are {cols}"
        )
    cast = _undecoded(ds.features[img])
    if cast is not None:
        ds = ds.cast_column(img, cast)
    names = getattr(ds.features[lab], "names", None)
    return ds, img, lab, names


def _rows(ds, files: list[Path]):
    """The rows of ``ds``; a file that breaks while being read is a DatasetError naming the files."""
    it = iter(ds)
    while True:
        try:
            row = next(it)
        except StopIteration:
            return
        except Exception as e:  # noqa: BLE001 (pyarrow raises many types for a corrupt file)
            raise DatasetError(f"{', '.join(map(str, files))}: cannot read a row ({type(e).__name__}: {e})") from None
        yield row


def prepare_hub(
    name: str,
    root: str | os.PathLike,
    *,
    fold: int | None = None,
    subset: str | None = None,
    split: str | None = "all",
    image_dir: str | os.PathLike | None = None,
) -> Prepared:
    """Samples of hub corpus ``name`` under ``root``; images extracted to ``image_dir``."""
    spec = HUB[name]
    root = check_root(root, name)
    require_no_fold(name, fold)
    if subset is not None:
        raise DatasetError(f"{name}: unknown subset {subset!r}; {name} has no subsets")
    if image_dir is None:
        raise DatasetError(
            f"{name}: a hub-format corpus stores its images inside parquet files; give image_dir= "
            "(where they are extracted; `emorl data prepare` uses images/ beside the manifest)"
        )
    out_dir = Path(image_dir).expanduser().resolve()
    chosen = select_splits(name, split, spec.splits)
    found = {s: parquet_files(root, s) for s in chosen}
    if not any(found.values()) or (split not in (None, "all") and not all(found.values())):
        tried = ", ".join(p.format(s=s) for s in chosen if not found[s] for p in SPLIT_PATTERNS[:1])
        raise DatasetError(
            f"{root}: no parquet files for split(s) {', '.join(s for s in chosen if not found[s])} "
            f"(looked for {tried} and the other patterns in emorl.data.corpora.hub.SPLIT_PATTERNS)"
        )
    samples, rejects = [], []
    for split_name, files in found.items():
        if not files:
            continue
        ds, img_col, lab_col, names = _load(files, split_name, ", ".join(map(str, files)))
        for i, row in enumerate(_rows(ds, files)):
            sid, where = f"{name}-{split_name}-{i:05d}", f"{root}: {split_name} row {i}"
            media: Path = files[0]
            info = {"split": split_name, "source": f"{split_name}:{i}"}
            try:
                label, word = _label(row[lab_col], names, spec.dataset, where)
                items = _images(row[img_col], where)
                if len(items) > 1:
                    raise RowError("several_images", where, f"{len(items)} images; an emorl sample holds one")
                if not items or items[0] == (None, None):
                    raise RowError("no_image", where, "no image (no bytes and no path)")
                data, rel = items[0]
                media = extract(data, out_dir, rel or "") if data else inside(root, rel, where)
            except RowError as e:
                rejects.append(row_reject(sid, media, e, info))
                continue
            problem = None if data else media_problem(media)
            if problem:
                rejects.append(Reject(sid, str(media), problem[0], problem[1], {"label": label, **info}))
                continue
            meta: dict[str, Any] = {"source": info["source"], "answer": word}
            if data:
                meta["sha256"] = media.name.split(".")[0]
            fields = {k: v for k, v in row.items() if k not in (img_col, lab_col) and isinstance(v, str)}
            if fields:
                meta["fields"] = fields
            samples.append(image_sample(spec.dataset, sid, media, label, split_name, meta))
    return Prepared(samples, rejects)
