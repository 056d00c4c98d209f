"""avatar-callbacks receiver: verify, store durably, acknowledge, deliver typed events.

The public surface is what this module exports; everything else may change between releases.
"""

from callbacks.app import create_app
from callbacks.config import Config, ConfigError, RouteConfig, load_config, parse_config
from callbacks.events import (
    Event,
    MetaStudioJobResult,
    MetaStudioLiveEvent,
    MetaStudioTtsResult,
    ReplyCommandFinish,
    RtmpStreamStateChange,
    SenseTimeCallback,
    ShootScriptSwitch,
)
from callbacks.handlers import Handlers

__all__ = [
    "Config",
    "ConfigError",
    "Event",
    "Handlers",
    "MetaStudioJobResult",
    "MetaStudioLiveEvent",
    "MetaStudioTtsResult",
    "ReplyCommandFinish",
    "RouteConfig",
    "RtmpStreamStateChange",
    "SenseTimeCallback",
    "ShootScriptSwitch",
    "create_app",
    "load_config",
    "parse_config",
]
