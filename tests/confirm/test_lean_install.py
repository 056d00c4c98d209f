"""The base install stays lean: the receiver never imports the MetaStudio client's dependencies."""

from __future__ import annotations

import subprocess
import sys

CLIENT_DEPS = ("httpx", "huaweicloudsdkcore", "huaweicloudsdkmetastudio", "requests")


def test_importing_callbacks_and_confirm_does_not_import_client_dependencies() -> None:
    code = (
        "import sys, callbacks, callbacks.app, callbacks.confirm, callbacks.confirm.testing\n"
        f"print(','.join(m for m in {CLIENT_DEPS!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_the_client_does_import_httpx() -> None:
    # The check above can fail: the client module does pull httpx in.
    code = "import sys, callbacks.confirm.client\nprint('httpx' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"
