"""A config union whose member models are imported only when a config names them.

A pydantic discriminated union builds the schema of every member at import time. For the ticket
sinks that meant importing all nine sink adapters (and their libraries) at start-up, even though
a config uses one or two. ``TaggedModels`` is ``Annotated`` metadata that picks the model by the
tag key (``type:``), imports its module on first use and validates with it; errors keep
pydantic's union-tag shape, so the loader names the same file line and field as before.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, GetCoreSchemaHandler
from pydantic_core import PydanticCustomError, core_schema


class TaggedModels:
    """Validate a mapping with the model its ``key`` names (``tag -> "module:attribute"``)."""

    def __init__(self, key: str, models: Mapping[str, str]) -> None:
        self.key = key
        self.paths = dict(models)

    def model(self, tag: str) -> type[BaseModel]:
        """The model registered for ``tag`` (imports its module); KeyError when unknown."""
        module, _, attribute = self.paths[tag].partition(":")
        model: type[BaseModel] = getattr(importlib.import_module(module), attribute)
        return model

    def model_for(self, data: object) -> type[BaseModel] | None:
        """The model ``data``'s tag names, or None (no mapping, no tag, unknown tag)."""
        if not isinstance(data, dict):
            return None
        tag = data.get(self.key)
        if not isinstance(tag, str) or tag not in self.paths:
            return None
        return self.model(tag)

    def validate(self, value: Any) -> BaseModel:
        """The validated model instance (pydantic error kinds as a discriminated union's)."""
        if isinstance(value, BaseModel):
            return value
        if not isinstance(value, dict):
            raise PydanticCustomError("dict_type", "Input should be a valid dictionary")
        if self.key not in value:
            raise PydanticCustomError(
                "union_tag_not_found", "Unable to extract tag using discriminator {discriminator}",
                {"discriminator": f"'{self.key}'"})
        tag = value[self.key]
        if not isinstance(tag, str) or tag not in self.paths:
            expected = ", ".join(f"'{t}'" for t in self.paths)
            raise PydanticCustomError(
                "union_tag_invalid",
                "Input tag '{tag}' found using {discriminator} does not match any of the "
                "expected tags: {expected_tags}",
                {"discriminator": f"'{self.key}'", "tag": str(tag), "expected_tags": expected})
        return self.model(tag).model_validate(value)

    def __get_pydantic_core_schema__(self, source: Any,
                                     handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(self.validate)
