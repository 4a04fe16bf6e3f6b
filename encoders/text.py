"""Text encoders: texts in, L2-normalised float32 vectors out.

``TransformerTextEncoder`` runs a sentence-transformer checkpoint (mean
pooling, then L2 norm) from a local directory or an installed package; it
never downloads. ``HashingTextEncoder`` is the in-memory fake with the same
contract, for unit tests that must not load torch.
"""

from __future__ import annotations

import hashlib
import importlib
import math
import os
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


def cpu_budget() -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup v2 quota.

    torch defaults to one thread per core of the host; in a container limited
    by a CPU quota that oversubscribes the quota and every forward pass stalls
    on throttling.
    """
    cpus = len(os.sched_getaffinity(0))
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota == "max":
            return cpus
        return max(1, min(cpus, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError, ZeroDivisionError):
        return cpus


def length_chunks(lengths: Sequence[int], max_texts: int) -> list[list[int]]:
    """Indices grouped into forward passes: shortest first, at most ``max_texts`` each, at most half padding.

    Every text in a pass is padded to the longest one, so one long product
    description among short queries would make them all cost as much as it.

    >>> length_chunks([5, 120, 6, 7], max_texts=64)
    [[0, 2, 3], [1]]
    >>> length_chunks([20] * 5, max_texts=2)
    [[0, 1], [2, 3], [4]]
    """
    chunks: list[list[int]] = []
    chunk: list[int] = []
    real = 0
    for index in sorted(range(len(lengths)), key=lengths.__getitem__):
        length = lengths[index]
        # Ascending order: the newcomer is the longest, so it sets the padded size.
        if chunk and (len(chunk) >= max_texts or (len(chunk) + 1) * length > 2 * (real + length)):
            chunks.append(chunk)
            chunk, real = [], 0
        chunk.append(index)
        real += length
    if chunk:
        chunks.append(chunk)
    return chunks


def l2_normalize(matrix: npt.NDArray[np.floating]) -> Vectors:
    """Rows scaled to unit length (zero rows stay zero)."""
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    scaled: Vectors = np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0).astype(np.float32)
    return scaled


class TransformerTextEncoder:
    """A sentence-transformer checkpoint run with torch and transformers."""

    def __init__(self, settings: EncoderSettings, source: str | None = None) -> None:
        import torch
        import transformers

        spec = source or settings.model
        path = resolve_model_dir(spec)
        want_cuda = settings.device == "cuda" or (settings.device == "auto" and torch.cuda.is_available())
        if settings.device == "cuda" and not torch.cuda.is_available():
            raise ConfigError("device 'cuda' requested but no GPU is visible", model=spec)
        self._device = torch.device("cuda" if want_cuda else "cpu")
        # Half precision halves GPU memory and roughly doubles throughput;
        # on the CPU float16 matmuls are slow, so auto keeps float32 there.
        # bfloat16 (autocast: matmuls in bf16, norms and softmax in fp32) is
        # the CPU's opt-in: about twice as fast where the CPU has bf16
        # instructions, cosine to the float32 vectors above 0.9999.
        precision = settings.precision if settings.precision != "auto" else ("float16" if want_cuda else "float32")
        if precision == "float16" and not want_cuda:
            raise ConfigError("float16 needs a GPU; use bfloat16 on the CPU", model=spec)
        self._precision = precision
        if not want_cuda:
            torch.set_num_threads(settings.threads or cpu_budget())
        self._tokenizer = transformers.AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        model = transformers.AutoModel.from_pretrained(str(path), local_files_only=True)
        self._model = (model.half() if precision == "float16" else model).to(self._device).eval()
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

    @property
    def precision(self) -> str:
        """Arithmetic of the forward pass: ``float32``, ``float16`` or ``bfloat16``."""
        return self._precision

    def encode(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self._dim), dtype=np.float32)
        pooled = np.empty((len(texts), self._dim), dtype=np.float32)
        try:
            with self._lock:
                ids = self._tokenizer(list(texts), truncation=True, max_length=self._max_length)["input_ids"]
                for chunk in length_chunks([len(each) for each in ids], self._batch_size):
                    pooled[chunk] = self._encode_batch([texts[i] for i in chunk])
        except RuntimeError as exc:
            raise EncoderError("forward pass failed", model=self._name, texts=len(texts)) from exc
        return l2_normalize(pooled)

    def _encode_batch(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        import torch

        batch = self._tokenizer(
            list(texts), padding=True, truncation=True, max_length=self._max_length, return_tensors="pt"
        ).to(self._device)
        bf16 = torch.autocast(self._device.type, dtype=torch.bfloat16, enabled=self._precision == "bfloat16")
        with torch.inference_mode(), bf16:
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
