"""Browser tests: real servers (``guichet serve``) on derived caisse configs, driven by Debian's chromium.

Skipped with a clear line when /usr/bin/chromium (or $GUICHET_CHROMIUM) or Playwright is missing, unless
GUICHET_REQUIRE_BROWSER=1 (then they fail). Servers are started once per caisse for the whole package;
each test takes new people from the demo registry, so tests do not depend on one another.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.support import CHROMIUM, CHROMIUM_ARGS, TEST_CITIZEN, TEST_CODES, LiveServer, People, start_server

REQUIRE_BROWSER = os.environ.get("GUICHET_REQUIRE_BROWSER") == "1"
try:
    import playwright  # noqa: F401

    PLAYWRIGHT = True
except ImportError:  # the test modules import it: do not even collect them, say so in the header
    if REQUIRE_BROWSER:
        raise
    PLAYWRIGHT = False
    collect_ignore_glob = ["test_*.py"]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 320, "height": 640}


def pytest_report_header(config: Any) -> list[str]:
    if not PLAYWRIGHT:
        return ["browser tests: skipped, playwright is not installed (pip install -e '.[test]')"]
    if not os.path.exists(CHROMIUM):
        return [f"browser tests: skipped, {CHROMIUM} not found (apt-get install chromium)"]
    return [f"browser tests: {CHROMIUM}"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if Path(str(item.fspath)).is_relative_to(here):
            item.add_marker(pytest.mark.browser)


def browser_missing(why: str) -> None:
    if REQUIRE_BROWSER:
        pytest.fail(f"{why} (GUICHET_REQUIRE_BROWSER=1 requires the browser tests to run)")
    pytest.skip(f"{why}: browser tests skipped (apt-get install chromium; pip install -e '.[test]')")


@pytest.fixture(scope="package")
def playwright_browser() -> Iterator[Any]:
    if not os.path.exists(CHROMIUM):
        browser_missing(f"{CHROMIUM} not found")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        browser_missing("playwright is not installed")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class Servers:
    """One live server per caisse config, started on first use and stopped at the end of the session."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.running: dict[str, LiveServer] = {}

    def __call__(self, name: str, *, own: str = "") -> LiveServer:
        """The server of config ``name``; ``own`` gives a group of tests a server of their own (its
        per-address registration limit, 30 an hour from 127.0.0.1, is then theirs alone)."""
        key = f"{name}-{own}" if own else name
        if key not in self.running:
            server = start_server(name, self.base / key, codes=TEST_CODES.get(name), citizen=TEST_CITIZEN.get(name))
            server.people = People()  # type: ignore[attr-defined]
            self.running[key] = server
        return self.running[key]

    def stop(self) -> None:
        for server in self.running.values():
            server.stop()


@pytest.fixture(scope="package")
def servers(tmp_path_factory: pytest.TempPathFactory, playwright_browser: Any) -> Iterator[Servers]:
    """Package-scoped, like the browser: the sync Playwright loop must be gone before the async tests run."""
    running = Servers(tmp_path_factory.mktemp("servers"))
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def demo_server(servers: Servers) -> LiveServer:
    """config/demo.toml."""
    return servers("demo")


@pytest.fixture
def provence_azur(servers: Servers) -> LiveServer:
    """config/provence-azur.toml with SQLite and the demo sinks (its 15-minute email login code stays)."""
    return servers("provence-azur")


@pytest.fixture
def sud_aquitaine(servers: Servers) -> LiveServer:
    """config/sud-aquitaine.toml with SQLite and the demo sinks (its 4-digit recovery code stays)."""
    return servers("sud-aquitaine")


@pytest.fixture(params=["demo", "provence-azur", "sud-aquitaine"])
def caisse_server(servers: Servers, request: pytest.FixtureRequest) -> LiveServer:
    """Each shipped config in turn: the demo, and both caisses with their own presets and colours."""
    return servers(request.param)


@pytest.fixture(params=["provence-azur", "sud-aquitaine"])
def seed_server(servers: Servers, request: pytest.FixtureRequest) -> LiveServer:
    """The two configs drawn from the seeds: Provence Azur's guide (000) and Sud Aquitaine's (002), on
    servers of their own (the seed-fidelity tests register many people from one address)."""
    return servers(request.param, own="seeds")


@pytest.fixture(params=[360, 1280], ids=["360px", "1280px"])
def width(request: pytest.FixtureRequest) -> dict[str, int]:
    """A phone and a desktop screen."""
    return {"width": int(request.param), "height": 640 if request.param < 800 else 800}


@pytest.fixture(params=["js", "nojs"])
def js(request: pytest.FixtureRequest) -> bool:
    """Every flow twice: with JavaScript (htmx swaps #step) and without (plain POST, full pages)."""
    return request.param == "js"


@pytest.fixture
def open_browser(playwright_browser: Any) -> Iterator[Callable[..., Any]]:
    """Open a Browse tab on a server; JS-off tabs get a JS-on inspector tab for axe, at 320 px."""
    from tests.browser.flows import Browse

    contexts: list[Any] = []

    def factory(server: LiveServer, *, js: bool, viewport: dict[str, int] | None = None) -> Browse:
        size = viewport or (DESKTOP if js else PHONE)
        context = playwright_browser.new_context(java_script_enabled=js, viewport=size, locale="fr-FR")
        context.set_default_timeout(10_000)
        contexts.append(context)
        inspector = None
        if not js:
            inspecting = playwright_browser.new_context(viewport=size)
            contexts.append(inspecting)
            inspector = inspecting.new_page()
        return Browse(page=context.new_page(), server=server, js=js, inspector=inspector)

    yield factory
    for context in contexts:
        context.close()
