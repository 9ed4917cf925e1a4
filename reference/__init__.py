"""The Mimic API's reference server: Falcon on uvicorn, llama.cpp through llama-cpp-python.

`create_app(config)` builds the ASGI app; `Config.load()` reads the configuration. Both are
imported on first use, so that `import reference.engine` stays free of the HTTP stack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from reference.app import create_app
    from reference.config import Config

__all__ = ["Config", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from reference.app import create_app

        return create_app
    if name == "Config":
        from reference.config import Config

        return Config
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
