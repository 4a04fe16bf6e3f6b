"""The model registry: a setting names a model, a loader builds it.

``EncoderSettings.models`` maps names to a loader and a source, so serving
another model is a setting, not code. ``EncoderSettings.model`` is either
one of those names or, as before the registry, a transformer source
(``package:<module>`` or a local directory). Nothing here downloads.

>>> from encoders.settings import EncoderSettings, ModelSpec
>>> settings = EncoderSettings(model="fake", models={"fake": ModelSpec(loader="hashing", source="16")})
>>> loaded = load_model(settings)
>>> (loaded.name, loaded.dim, loaded.device)
('hashing-16', 16, 'cpu')
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from encoders.settings import EncoderSettings, ModelSpec
from encoders.text import HashingTextEncoder, TextEncoder, resolve_model_dir
from streamrec.errors import ConfigError


@dataclass(frozen=True, slots=True)
class LoadedModel:
    """A model ready to encode, with what travels with its vectors."""

    encoder: TextEncoder
    version: str
    device: str
    precision: str = "float32"

    @property
    def name(self) -> str:
        """Model name; stored with every vector."""
        return self.encoder.name

    @property
    def dim(self) -> int:
        """Vector dimension."""
        return self.encoder.dim


Loader = Callable[[ModelSpec, EncoderSettings], LoadedModel]

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt")


def model_version(path: Path) -> str:
    """Short content hash of a model directory's config, tokenizer and weights.

    Two directories with the same files give the same version wherever they
    are installed, and any change to the weights gives a new one.
    """
    digest = hashlib.sha256()
    for file in sorted(p for p in path.iterdir() if p.is_file()):
        if file.suffix in _WEIGHT_SUFFIXES or file.suffix in {".json", ".txt", ".model"}:
            digest.update(file.name.encode())
            with file.open("rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(chunk)
    return digest.hexdigest()[:12]


def _transformer(spec: ModelSpec, settings: EncoderSettings) -> LoadedModel:
    from encoders.text import TransformerTextEncoder

    encoder = TransformerTextEncoder(settings, source=spec.source)
    version = spec.version or model_version(resolve_model_dir(spec.source))
    return LoadedModel(encoder, version, encoder.device, encoder.precision)


def _hashing(spec: ModelSpec, settings: EncoderSettings) -> LoadedModel:
    try:
        dim = int(spec.source)
    except ValueError:
        raise ConfigError("hashing model source must be its dimension", source=spec.source) from None
    if dim < 1:
        raise ConfigError("hashing model dimension must be positive", source=spec.source)
    return LoadedModel(HashingTextEncoder(dim), spec.version or "1", "cpu")


LOADERS: dict[str, Loader] = {"transformer": _transformer, "hashing": _hashing}


def model_spec(settings: EncoderSettings) -> ModelSpec:
    """The registry entry named by ``settings.model``, or a transformer from that source."""
    if settings.model in settings.models:
        return settings.models[settings.model]
    return ModelSpec(loader="transformer", source=settings.model)


def load_model(settings: EncoderSettings) -> LoadedModel:
    """Build the model ``settings.model`` names (seconds for a transformer)."""
    spec = model_spec(settings)
    loader = LOADERS.get(spec.loader)
    if loader is None:
        raise ConfigError("unknown model loader", loader=spec.loader, known=sorted(LOADERS))
    return loader(spec, settings)
