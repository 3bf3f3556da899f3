"""Frozen-encoder outputs kept across the passes of a step and across epochs (``EncoderCache``),
keyed by clip content, preprocessing settings and the encoders' weights. Family-independent: the
weights are those of the adapter's ``towers()`` and ``projectors()``."""

from __future__ import annotations

import hashlib
import json
import weakref
from collections import OrderedDict
from pathlib import Path

import torch

from emorl.models.adapter import MediaEmbeds, PromptInputs


def encoder_fingerprint(adapter) -> str:
    """Identifies the weights that turn media into embeddings (the adapter's towers and
    projectors): their configs, dtypes, shapes and per-tensor sums."""
    h = hashlib.blake2b(digest_size=16)
    parts = {
        **{f"tower.{k}": v for k, v in adapter.towers().items()},
        **{f"projector.{k}": v for k, v in adapter.projectors().items()},
    }
    for name in sorted(parts):
        tower = parts[name]
        config = getattr(tower, "config", None)
        if config is not None:
            h.update(json.dumps(config.to_dict(), sort_keys=True, default=str).encode())
        with torch.no_grad():
            for pname, p in tower.state_dict().items():
                p = p.full_tensor() if hasattr(p, "full_tensor") else p  # FSDP2 shard -> whole tensor
                h.update(f"{name}.{pname}:{p.dtype}:{tuple(p.shape)}".encode())
                stats = torch.stack([p.double().sum(), p.double().abs().sum(), p.double().square().sum()])
                h.update(stats.cpu().numpy().tobytes())
    return h.hexdigest()


class EncoderCache:
    """Frozen-encoder outputs, reusable across the passes of a step and across epochs.

    Key: clip content (bytes, dtype and shape of every media tensor of the prompt, including grids
    and seconds per grid), ``settings`` (preprocessing: frame size, fps, sample count, processor
    revision... anything the caller passes) and the towers' weights (``encoder_fingerprint``). A
    change in any of them is a different key, so stale outputs are never returned. Entries live in
    an LRU dict of ``max_items`` (on ``memory_device``, default: where they were computed) and,
    with ``directory``, as ``<key>.pt`` files (CPU tensors) that a later process finds again.
    Only valid for frozen towers: ``encode_media`` bypasses the cache when they are trainable.
    The towers' fingerprint is computed once per model object; call ``refresh()`` after loading
    other weights into the same frozen towers in place.
    """

    def __init__(
        self,
        directory: str | Path | None = None,
        *,
        settings=None,
        max_items: int = 256,
        memory_device: str | torch.device | None = None,
    ):
        self.directory = Path(directory) if directory is not None else None
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
        self.settings = json.dumps(settings if settings is not None else {}, sort_keys=True, default=str)
        self.max_items = max_items
        self.memory_device = memory_device
        self._mem: OrderedDict[str, MediaEmbeds] = OrderedDict()
        self._memo: dict[int, tuple[weakref.ref, str, str]] = {}  # id(prompt) -> (ref, fingerprint, key)
        self._fingerprints: dict[int, tuple[weakref.ref, str]] = {}
        self.hits = self.misses = 0

    def refresh(self) -> None:
        """Forget fingerprints and per-prompt keys (the entries stay; their keys still hold)."""
        self._fingerprints.clear()
        self._memo.clear()

    def fingerprint(self, adapter) -> str:
        """``encoder_fingerprint`` of the adapter's model (computed once per model object)."""
        model = adapter.model
        got = self._fingerprints.get(id(model))
        if got is None or got[0]() is not model:
            got = (weakref.ref(model), encoder_fingerprint(adapter))
            self._fingerprints[id(model)] = got
        return got[1]

    def key(self, prompt: PromptInputs, adapter) -> str:
        """Content key of ``prompt``'s media for the adapter's encoders (hashed once per prompt object)."""
        fp = self.fingerprint(adapter)
        got = self._memo.get(id(prompt))
        if got is not None and got[0]() is prompt and got[1] == fp:
            return got[2]
        h = hashlib.blake2b(digest_size=20)
        h.update(self.settings.encode())
        h.update(fp.encode())
        h.update(prompt.modality.value.encode())
        for name in sorted(prompt.mm):
            t = prompt.mm[name].detach().contiguous().cpu()
            h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
            h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        key = h.hexdigest()
        if len(self._memo) > 4 * self.max_items:
            self._memo = {k: v for k, v in self._memo.items() if v[0]() is not None}
        self._memo[id(prompt)] = (weakref.ref(prompt), fp, key)
        return key

    def get(self, key: str, device=None) -> MediaEmbeds | None:
        m = self._mem.get(key)
        if m is not None:
            self._mem.move_to_end(key)
        elif self.directory is not None and (self.directory / f"{key}.pt").is_file():
            d = torch.load(self.directory / f"{key}.pt", map_location="cpu", weights_only=True)
            m = MediaEmbeds(d["embeds"], {k: tuple(v) if isinstance(v, list) else v for k, v in d["extra"].items()})
            self._remember(key, m)
        if m is None:
            self.misses += 1
            return None
        self.hits += 1
        return m if device is None else m.to(device)

    def put(self, key: str, media: MediaEmbeds) -> None:
        media = media.map(torch.Tensor.detach)
        self._remember(key, media)
        if self.directory is not None:
            path = self.directory / f"{key}.pt"
            tmp = path.with_suffix(".tmp")
            d = media.to("cpu")
            torch.save(
                {"embeds": d.embeds, "extra": {k: list(v) if isinstance(v, tuple) else v for k, v in d.extra.items()}},
                tmp,
            )
            tmp.replace(path)

    def _remember(self, key: str, media: MediaEmbeds) -> None:
        self._mem[key] = media if self.memory_device is None else media.to(self.memory_device)
        self._mem.move_to_end(key)
        while len(self._mem) > self.max_items:
            self._mem.popitem(last=False)

    def __len__(self) -> int:
        return len(self._mem)
