"""What the servicers share: settings, the model registry, and whether the server is draining."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from labs_core.config import Settings
from labs_core.models.registry import ModelRegistry


@dataclass
class CoreState:
    settings: Settings
    registry: ModelRegistry
    started_at: float = field(default_factory=time.time)
    draining: bool = False
    active_streams: int = 0
    # Optional services other modules attach (finance engine, embedding batcher, ...).
    extras: dict[str, Any] = field(default_factory=dict)
