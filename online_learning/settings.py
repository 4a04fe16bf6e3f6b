"""Settings of online learning (env prefix ``STREAMREC_``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class LearningSettings(BaseSettings):
    """Label join, model choice and snapshot cadence."""

    model_config = SettingsConfigDict(env_prefix="STREAMREC_", frozen=True, extra="ignore")

    topic_examples: str = Field("streamrec.examples", description="labeled examples (one partition: one learner)")
    attribution_window_s: float = Field(1800.0, gt=0, description="how long a click can still label an impression")
    join_tick_s: float = Field(1.0, gt=0, description="how often expired impressions are closed")
    model_kind: Literal["logreg", "fm"] = "logreg"
    model_seed: int = 0
    snapshot_interval_s: float = Field(10.0, gt=0, description="how often the learner publishes a snapshot")
    min_examples_to_serve: int = Field(50, ge=0, description="examples learned before the API ranks with the model")
    item_half_life_s: float = Field(86_400.0, gt=0, description="half-life of item views and clicks")
    example_dedup_window: int = Field(
        10_000, ge=1, description="recent example ids the learner remembers so a re-emitted example is learned once"
    )
    min_auc: float = Field(0.4, ge=0, le=1, description="a model below this progressive AUC is not published")
