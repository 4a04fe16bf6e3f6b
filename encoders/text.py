"""Text encoders: texts in, L2-normalised float32 vectors out.

``TransformerTextEncoder`` runs a sentence-transformer checkpoint (mean
pooling, then L2 norm) from a local directory or an installed package; it
never downloads. ``HashingTextEncoder`` is the in-memory fake with the same
contract, for unit tests that must not load torch.
"""

from __future__ import annotations

import hashlib
import importlib
import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
import numpy.typing as npt

from encoders.settings import EncoderSettings
from streamrec.errors import ConfigError, EncoderError

if TYPE_CHECKING:
    import torch

Vectors = npt.NDArray[np.float32]


class TextEncoder(Protocol):
    """Anything that embeds texts into one normalised vector space."""

    @property
    def name(self) -> str:
        """Model name; travels with every vector."""

    @property
    def dim(self) -> int:
        """Vector dimension."""

    def encode(self, texts: Sequence[str]) -> Vectors:
        """Embed texts into an (n, dim) array of unit vectors; blocking."""


def resolve_model_dir(spec: str) -> Path:
    """Find the model directory named by ``package:<module>`` or a path."""
    if spec.startswith("package:"):
        module_name = spec.removeprefix("package:")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ConfigError("model package is not installed", model=spec) from exc
        locate = getattr(module, "get_model_path", None)
        path = Path(locate()) if callable(locate) else Path(str(module.__file__)).parent / "model"
    else:
        path = Path(spec).expanduser()
    if not (path / "config.json").is_file():
        raise ConfigError("model directory has no config.json", model=spec, path=str(path))
    return path


def l2_normalize(matrix: npt.NDArray[np.floating]) -> Vectors:
    """Rows scaled to unit length (zero rows stay zero)."""
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    scaled: Vectors = np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0).astype(np.float32)
    return scaled


class TransformerTextEncoder:
    """A sentence-transformer checkpoint run with torch and transformers."""

    def __init__(self, settings: EncoderSettings) -> None:
        import torch
        import transformers

        path = resolve_model_dir(settings.model)
        want_cuda = settings.device == "cuda" or (settings.device == "auto" and torch.cuda.is_available())
        if settings.device == "cuda" and not torch.cuda.is_available():
            raise ConfigError("device 'cuda' requested but no GPU is visible", model=settings.model)
        self._device = torch.device("cuda" if want_cuda else "cpu")
        if settings.threads:
            torch.set_num_threads(settings.threads)
        self._tokenizer = transformers.AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        model = transformers.AutoModel.from_pretrained(str(path), local_files_only=True)
        # Half precision halves GPU memory and roughly doubles throughput;
        # on the CPU float16 matmuls are slow, so keep float32 there.
        self._model = (model.half() if want_cuda else model).to(self._device).eval()
        self._max_length = settings.max_length
        self._batch_size = settings.batch_size
        self._name = path.name if path.name != "model" else path.parent.name
        self._dim = int(model.config.hidden_size)
        # One forward pass at a time: torch already uses every core for one.
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self._name

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def device(self) -> str:
        """Where the model runs: ``cpu`` or ``cuda``."""
        return self._device.type

    def encode(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self._dim), dtype=np.float32)
        try:
            with self._lock:
                parts = [
                    self._encode_batch(texts[start : start + self._batch_size])
                    for start in range(0, len(texts), self._batch_size)
                ]
        except RuntimeError as exc:
            raise EncoderError("forward pass failed", model=self._name, texts=len(texts)) from exc
        return l2_normalize(np.concatenate(parts))

    def _encode_batch(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        import torch

        batch = self._tokenizer(
            list(texts), padding=True, truncation=True, max_length=self._max_length, return_tensors="pt"
        ).to(self._device)
        with torch.inference_mode():
            hidden: torch.Tensor = self._model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        result: npt.NDArray[np.float32] = pooled.float().cpu().numpy()
        return result


_TOKEN = re.compile(r"[a-z0-9]+")


class HashingTextEncoder:
    """Deterministic bag-of-words hashing: a fast fake for unit tests.

    Texts sharing words get similar vectors; there is no semantics beyond that.
    """

    def __init__(self, dim: int = 64) -> None:
        self._dim = dim

    @property
    def name(self) -> str:
        return f"hashing-{self._dim}"

    @property
    def dim(self) -> int:
        return self._dim

    def encode(self, texts: Sequence[str]) -> Vectors:
        matrix = np.zeros((len(texts), self._dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for token in _TOKEN.findall(text.lower()):
                digest = hashlib.blake2b(token.encode(), digest_size=8).digest()
                matrix[row, int.from_bytes(digest[:4], "little") % self._dim] += 1.0 if digest[4] & 1 else -1.0
        return l2_normalize(matrix)
