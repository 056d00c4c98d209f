"""avatar-callbacks receiver: verify, store durably, acknowledge, deliver typed events.

The public surface is what this module exports; everything else may change between releases.
``create_app`` takes a :class:`ServingStore` (the records it deals in are exported with it, for
a store of your own) and a :class:`KeyFile`.
"""

from callbacks.app import create_app
from callbacks.config import Config, RouteConfig, load_config, parse_config
from callbacks.errors import (
    CallbacksError,
    ConfigError,
    HandlerLoadError,
    KeyFileError,
    PermanentError,
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
from callbacks.handlers import DeadLetter, Handlers
from callbacks.keyfile import KeyFile
from callbacks.store import (
    Accepted,
    InboundCallback,
    Lease,
    Outcome,
    ServingStore,
    StoredEvent,
)

__all__ = [
    "Accepted",
    "CallbacksError",
    "Config",
    "ConfigError",
    "DeadLetter",
    "Event",
    "HandlerLoadError",
    "Handlers",
    "InboundCallback",
    "KeyFile",
    "KeyFileError",
    "Lease",
    "MetaStudioJobResult",
    "MetaStudioLiveEvent",
    "MetaStudioTtsResult",
    "Outcome",
    "PermanentError",
    "ReplyCommandFinish",
    "RouteConfig",
    "RtmpStreamStateChange",
    "SenseTimeCallback",
    "ServingStore",
    "ShootScriptSwitch",
    "StoreUnavailable",
    "StoredEvent",
    "create_app",
    "load_config",
    "parse_config",
]
