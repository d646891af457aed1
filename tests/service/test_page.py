"""The web page in real headless Chromium (Debian's, driven by Playwright) on real photos."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from faceverify.service.settings import ServiceSettings
from tests.service.helpers import write_keys

sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (no browser download)")
expect = sync_api.expect

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOT = Path("/tmp/faceverify-page.png")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="pip install playwright (no browser download)"
    )
    if not Path(CHROMIUM).exists():
        pytest.skip(f"Chromium not found at {CHROMIUM}; apt-get install chromium")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1200, "height": 1400})
    opened = context.new_page()
    opened.set_default_timeout(20_000)
    yield opened
    context.close()


def _status(page: Any) -> str:
    return str(page.locator("#status").inner_text())


def _submit(page: Any, form: str, expected_status: str) -> None:
    page.locator(f"#{form} button[type=submit]").click()
    # locator assertions: the page's CSP forbids eval, which polling a JS string needs
    expect(page.locator("#status")).to_contain_text(expected_status)


def test_the_page_compares_enrols_identifies_and_removes(
    page: Any,
    serve: Callable[[ServiceSettings], str],
    dlib_settings: ServiceSettings,
    shared_faces: Path,
    tmp_path: Path,
) -> None:
    settings = replace(dlib_settings, keys_file=str(tmp_path / "keys.json"))
    (key,) = write_keys(settings, ("admin", None))
    base = serve(settings)  # dlib's face network: faces are found, aligned and really recognised
    gallery, probes = shared_faces / "gallery", shared_faces / "probes"
    page.on("dialog", lambda dialog: dialog.accept())
    page.goto(base + "/")
    expect(page.locator("#status")).to_contain_text("API key")

    page.get_by_label("API key").fill(key)  # pasted, kept in sessionStorage, never in the page
    page.get_by_role("button", name="Use key").click()
    expect(page.locator("#status")).to_contain_text("Galleries loaded")
    assert page.evaluate("sessionStorage.getItem('faceverify-api-key')") == key
    assert key not in page.content()

    # compare: the verdict the page shows is the API's, for the same photos
    a, b = gallery / "obama" / "obama.jpg", gallery / "obama" / "obama2.jpg"
    page.get_by_label("Photo A").set_input_files(str(a))
    page.get_by_label("Photo B").set_input_files(str(b))
    _submit(page, "verify-form", "Compared")
    expected = httpx.post(
        base + "/v1/verify",
        files={"a": (a.name, a.read_bytes()), "b": (b.name, b.read_bytes())},
        headers={"X-API-Key": key},
    ).json()
    verdict = page.locator("#verify-verdict")
    assert expected["same"] is True and verdict.get_attribute("data-same") == "true"
    assert verdict.inner_text().startswith("Same person")
    assert f"{expected['score']:.3f}" in verdict.inner_text()
    assert page.locator("#verify-photos .box").count() == 2

    # a gallery, two people enrolled from photos
    page.get_by_label("New gallery").fill("family")
    _submit(page, "gallery-create", "Created gallery family")
    for name, photos in (
        ("obama", [gallery / "obama" / "obama.jpg"]),
        ("biden", [gallery / "biden" / "biden.jpg"]),
    ):
        page.get_by_label("Name").fill(name)
        page.locator("#enroll-photos").set_input_files([str(p) for p in photos])
        _submit(page, "enroll-form", f"Enrolled {name}")
    expect(page.locator("#people-list .person")).to_have_text(["biden (1 photo)", "obama (1 photo)"])

    # identify: every face boxed and named, or "unknown"
    page.locator("#identify-photo").set_input_files(str(gallery / "obama" / "obama.jpg"))
    _submit(page, "identify-form", "1 face found")
    expect(page.locator("#identify-photos .tag")).to_have_text(["obama"])
    group = probes / "obama_and_biden.jpg"
    page.locator("#identify-photo").set_input_files(str(group))
    _submit(page, "identify-form", "3 faces found")
    expected_faces = httpx.post(
        base + "/v1/galleries/family/identify",
        files={"image": (group.name, group.read_bytes())},
        headers={"X-API-Key": key},
    ).json()["faces"]
    names = [face["name"] or "unknown" for face in expected_faces]
    assert sorted(names) == ["biden", "obama", "unknown"]  # the third face is not enrolled
    expect(page.locator("#identify-photos .tag")).to_have_text(names)
    expect(page.locator("#identify-list li")).to_have_count(3)
    page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
    shutil.copyfile(tmp_path / "page.png", SCREENSHOT)

    # remove a person from the list
    page.get_by_role("button", name="Remove biden").click()
    expect(page.locator("#people-list .person")).to_have_text(["obama (1 photo)"])


def test_the_page_is_labelled_keyboard_usable_and_fits_a_phone(
    page: Any, serve: Callable[[ServiceSettings], str], settings: ServiceSettings, tmp_path: Path
) -> None:
    base = serve(settings)
    (key,) = write_keys(settings, ("admin", None))
    page.set_viewport_size({"width": 360, "height": 740})
    page.goto(f"{base}/#key={key}")  # as `faceverify serve` prints it on its first start
    expect(page.locator("#key-state")).to_contain_text("Key set")
    assert page.evaluate("window.location.hash") == "" and key not in page.url
    unlabelled = page.evaluate(
        "Array.from(document.querySelectorAll('input, select')).filter(e => !e.labels || !e.labels.length)"
        ".map(e => e.id)"
    )
    assert unlabelled == []
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "api-key"
    page.get_by_label("New gallery").focus()
    page.keyboard.type("phone")
    page.keyboard.press("Enter")  # submits the form without a mouse
    expect(page.locator("#gallery-select")).to_have_value("phone")
    page.screenshot(path=str(tmp_path / "phone.png"), full_page=True)
