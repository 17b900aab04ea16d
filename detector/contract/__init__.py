"""The public contracts, copied verbatim from ``shared/contract``, and validators compiled from them."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from importlib import resources
from typing import Any

import fastjsonschema

QUERY_EVENT_SCHEMA = "query_event.schema.json"
ALERT_SCHEMA = "alert.schema.json"


@cache
def load_schema(name: str) -> dict[str, Any]:
    return json.loads(resources.files(__name__).joinpath(name).read_text(encoding="utf-8"))


@cache
def validator(name: str) -> Callable[[Any], Any]:
    """A compiled validator; raises ``fastjsonschema.JsonSchemaValueException``."""
    return fastjsonschema.compile(load_schema(name))
