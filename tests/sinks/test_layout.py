"""The sinks package's shape: only the backend modules import a client library, and only the
factory names the backends, so a receiver without an extra installed never imports it."""

from __future__ import annotations

import ast
from pathlib import Path

import callbacks.sinks

PACKAGE = Path(callbacks.sinks.__file__).parent
CLIENTS = {"httpx": "http", "nats": "nats", "aio_pika": "rabbitmq", "redis": "redis"}
BACKENDS = {"http", "nats", "rabbitmq", "redis"}


def top_level_imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
    return found


def test_client_libraries_are_imported_by_their_backend_only() -> None:
    for path in sorted(PACKAGE.glob("*.py")):
        imports = top_level_imports(path)
        for library, backend in CLIENTS.items():
            if library in {i.split(".")[0] for i in imports}:
                assert path.stem == backend, f"{path.name} imports {library}"


def test_only_the_factory_names_the_backend_modules() -> None:
    for path in sorted(PACKAGE.glob("*.py")):
        named = {i for i in top_level_imports(path) if i.startswith("callbacks.sinks.")}
        backends = {i.rsplit(".", 1)[1] for i in named} & BACKENDS
        assert not backends, f"{path.name} imports the backend(s) {sorted(backends)}"
    factory = (PACKAGE / "factory.py").read_text()
    for backend in BACKENDS:
        assert f'"callbacks.sinks.{backend}"' in factory
