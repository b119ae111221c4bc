"""The end-to-end harness's parts: a real `moat serve --demo` serving the built web app (fresh database,
port 0), Debian's Chromium driven by Playwright, and native clients through the uniffi bindings (the
surface the iOS app calls). `scripts/test` builds all three before running this folder."""

import importlib.util
import os
import time

import pytest

HERE = os.path.dirname(__file__)
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))

# The native side's helpers (server, tokens, Device, Listener) are tests/python/conftest.py's.
_spec = importlib.util.spec_from_file_location("native_support", os.path.join(ROOT, "tests", "python", "conftest.py"))
native = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(native)
NativeServer = native.Server

REPORT = os.path.join(ROOT, "target", "e2e-report")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


class Server(NativeServer):
    """The server of tests/python, serving the built web client too."""

    def __init__(self, tmp):
        super().__init__(tmp, web_root=os.path.join(ROOT, "web", "dist"))
        self.http = self.url.replace("ws://", "http://").removesuffix("/sync")
        self.db = str(tmp / "data" / "tenants" / "company-a.db")


@pytest.fixture
def server(tmp_path):
    s = Server(tmp_path)
    yield s
    s.stop()


@pytest.fixture(scope="session")
def chromium():
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=os.environ.get("CHROMIUM", "/usr/bin/chromium"),
                                    args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def wait(what, check, timeout=20.0):
    """Polls `check` until it returns something true (returned), for at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = check()
        if v:
            return v
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")
