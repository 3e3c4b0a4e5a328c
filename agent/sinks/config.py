"""Base of every sink's config model (kept apart from agent.config.schema to avoid an import
cycle: the schema imports the sink registry, which imports each sink's model)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class SinkModel(BaseModel):
    """Frozen, strict (unknown keys are errors) config of one sink; ``type`` discriminates."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str
