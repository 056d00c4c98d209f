"""avatar-callbacks receiver: verify, store durably, acknowledge, deliver typed events.

The public surface is what this module exports; everything else may change between releases.
"""

from callbacks.app import create_app
from callbacks.config import Config, RouteConfig, load_config, parse_config
from callbacks.errors import (
    CallbacksError,
    ConfigError,
    HandlerLoadError,
    KeyFileError,
    StoreUnavailable,
)
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
    "CallbacksError",
    "Config",
    "ConfigError",
    "Event",
    "HandlerLoadError",
    "Handlers",
    "KeyFileError",
    "MetaStudioJobResult",
    "MetaStudioLiveEvent",
    "MetaStudioTtsResult",
    "ReplyCommandFinish",
    "RouteConfig",
    "RtmpStreamStateChange",
    "SenseTimeCallback",
    "ShootScriptSwitch",
    "StoreUnavailable",
    "create_app",
    "load_config",
    "parse_config",
]
