"""What is computed once per base model and kept on disk: the key covariance, the preserved names' keys, the fingerprint."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from safetensors.torch import load_file

from ..edit import preserve
from ..edit.covariance import sample_texts, second_moments
from .atomic import atomic_path, build_once, save_tensors


WEIGHT_FILES = {".safetensors", ".bin"}


def fingerprint(model_dir: Path) -> str:
    """A short content hash of a checkpoint's weight files and config (what the covariance is keyed by)."""
    return _digests(Path(model_dir))[0]


def weights_fingerprint(model_dir: Path) -> str:
    """A short content hash of a checkpoint's weight files alone: the same weights converted or copied again
    (another transformers version writes another config.json) are the same model to the edits made on them."""
    return _digests(Path(model_dir))[1]


def _digests(model_dir: Path) -> tuple[str, str]:
    """(fingerprint, weights_fingerprint), hashed in one pass and remembered beside the checkpoint, keyed by
    file sizes and times, so the hundreds of megabytes are hashed once rather than at every open."""
    files = [f for f in sorted(model_dir.iterdir())
             if f.suffix in WEIGHT_FILES | {".json"} and f.name != "generation_config.json"]
    stamp = ";".join(f"{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files)
    memo = model_dir / ".agentmem-fingerprint"
    try:
        saved_stamp, saved, saved_weights = memo.read_text().split("\n")[:3]
        if saved_stamp == stamp and saved_weights:
            return saved, saved_weights
    except (OSError, ValueError):
        pass
    h, hw = hashlib.sha256(), hashlib.sha256()
    for f in files:
        weights = f.suffix in WEIGHT_FILES
        h.update(f.name.encode())
        if weights:
            hw.update(f.name.encode())
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                h.update(chunk)
                if weights:
                    hw.update(chunk)
    digests = h.hexdigest()[:16], hw.hexdigest()[:16]
    try:
        with atomic_path(memo) as tmp:
            tmp.write_text(f"{stamp}\n{digests[0]}\n{digests[1]}\n")
    except OSError:
        pass  # a read-only checkpoint folder: hash again next time
    return digests


class CovarianceCache:
    """C per layer on disk, computed on first use."""

    def __init__(self, root: Path, model_fingerprint: str):
        self.dir = Path(root) / "covariance" / model_fingerprint
        self.dir.mkdir(parents=True, exist_ok=True)

    def _file(self, layer: int, source: str, samples: int) -> Path:
        return self.dir / f"{source}-L{layer}-n{samples}.safetensors"

    def get(self, model, tokenizer, layers: list[int], samples: int, text_file: Path | None = None,
            progress=None) -> dict[int, torch.Tensor]:
        """C for each layer; sampled from the model (or read from `text_file`) only when missing."""
        source = "self" if text_file is None else "file-" + hashlib.sha256(Path(text_file).read_bytes()).hexdigest()[:12]

        def missing() -> list[int]:
            return [l for l in layers if not self._file(l, source, samples).exists()]

        build_once(self.dir / f"{source}-n{samples}", lambda: not missing(),
                   lambda: self._build(model, tokenizer, missing(), samples, source, text_file, progress))
        return {l: load_file(str(self._file(l, source, samples)))["mom2"] for l in layers}

    def _build(self, model, tokenizer, missing: list[int], samples: int, source: str, text_file: Path | None,
               progress) -> None:
        if progress:
            progress(f"computing key covariance for layers {missing} from {samples} samples ({source})")
        if text_file is None:
            texts = sample_texts(model, tokenizer, samples)
        else:
            texts = [t for t in Path(text_file).read_text().split("\n\n") if t.strip()][:samples]
            if not texts:
                raise ValueError(f"covariance text file {text_file} holds no text")
        moments, tokens = second_moments(model, tokenizer, missing, texts)
        if tokens < 2 * moments[missing[0]].shape[0]:
            raise ValueError(
                f"covariance needs at least {2 * moments[missing[0]].shape[0]} tokens, got {tokens}"
            )
        for l, c in moments.items():
            with atomic_path(self._file(l, source, samples)) as tmp:
                save_tensors({"mom2": c, "tokens": torch.tensor([tokens])}, tmp)


def cached_preservation_keys(cache_dir: Path, model_fingerprint: str, layers: list[int], compute) -> dict[int, torch.Tensor]:
    """The keys for these layers of this base model, computed once by `compute()` and kept on disk.

    The file name covers the model, the layers and preserve.py's lists, so a change to any of them recomputes.
    """
    lists = repr((preserve.NAMES, preserve.ENTITIES, preserve.RAW, preserve.QUESTIONS, preserve.ENTITY_QUESTIONS))
    lists = hashlib.sha256(lists.encode()).hexdigest()[:10]
    path = Path(cache_dir) / "preserve" / f"{model_fingerprint}-{lists}-L{'-'.join(map(str, layers))}.safetensors"

    def build() -> None:
        with atomic_path(path) as tmp:
            save_tensors({str(l): k.contiguous() for l, k in compute().items()}, tmp)

    build_once(path, path.exists, build)
    return {int(k): v for k, v in load_file(str(path)).items()}
