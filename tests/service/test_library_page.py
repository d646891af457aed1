"""The page's photo library in real headless Chromium (Debian's, driven by Playwright):
scan real photos, see the groups, correct them, and find the corrections in the API."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from faceverify.service.settings import ServiceSettings
from tests.service.helpers import write_keys
from tests.service.library_helpers import copy_shared_photos, face_of_photo

sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (no browser download)")
expect = sync_api.expect

from tests.service.test_page import CHROMIUM, CHROMIUM_ARGS  # noqa: E402  (after the skip)

SCREENSHOT = Path("/tmp/faceverify-library.png")


@pytest.fixture
def page() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"Chromium not found at {CHROMIUM}; apt-get install chromium")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        opened = browser.new_context(viewport={"width": 1200, "height": 1400}).new_page()
        opened.set_default_timeout(20_000)
        yield opened
        browser.close()


class Api:
    """The library as the API tells it (to find what to click, and to check what it did)."""

    def __init__(self, base: str, key: str) -> None:
        self.http = httpx.Client(base_url=base + "/v1", headers={"X-API-Key": key}, timeout=60)

    def get(self, path: str) -> Any:
        response = self.http.get(path)
        assert response.status_code == 200, response.text
        return response.json()

    def groups(self) -> dict[int, dict[str, Any]]:
        return {group["id"]: group for group in self.get("/libraries/family/groups")}

    def face(self, photo: str) -> dict[str, Any]:
        return face_of_photo(self.get("/libraries/family/faces"), photo)


def _status(page: Any, text: str, *, error: bool = False, timeout: float = 10_000) -> None:
    # locator assertions: the page's CSP forbids eval, which polling a JS string needs
    expect(page.locator("#status")).to_contain_text(text, timeout=timeout)
    expect(page.locator("#status")).to_have_class(re.compile(r"\berror\b" if error else r"^status$"))


def _thumbnails(page: Any) -> list[int]:
    """The natural width of every thumbnail, once each is shown (from a blob: URL)."""
    images = page.locator("#library-groups img")
    for index in range(images.count()):
        expect(images.nth(index)).to_have_attribute("src", re.compile("^blob:"))
    return [images.nth(i).evaluate("img => img.naturalWidth") for i in range(images.count())]


def _group(page: Any, group: int) -> Any:
    return page.locator(f'article.group[data-group="{group}"]')


def test_the_page_shows_the_groups_and_corrects_them(
    page: Any,
    serve: Callable[[ServiceSettings], str],
    dlib_settings: ServiceSettings,
    tmp_path: Path,
) -> None:
    photos = copy_shared_photos(tmp_path / "root")
    settings = replace(
        dlib_settings, keys_file=str(tmp_path / "keys.json"), library_roots=(str(tmp_path / "root"),)
    )
    (key,) = write_keys(settings, ("admin", None))
    base = serve(settings)
    api = Api(base, key)
    assert api.http.post("/galleries", json={"name": "family"}).status_code == 201

    page.goto(f"{base}/#key={key}")
    expect(page.locator("#library-gallery")).to_have_value("family")
    expect(page.locator("#library-groups")).to_contain_text("No faces yet")
    page.get_by_label("Folder on the server").fill(str(photos))
    page.get_by_role("button", name="Scan and group").click()
    _status(page, "Scanned 17 photos (17 new): 21 faces added; 5 groups.", timeout=60_000)

    # groups, largest first, each with thumbnails cut from the photos
    titles = page.locator("article.group:not(.loose) .group-title")
    expect(titles).to_have_text([f"unnamed · {n} faces" for n in (7, 4, 4, 3, 2)])
    expect(page.locator("article.loose .group-title")).to_have_text("In no group · 1 face")
    expect(page.locator("#library-groups img")).to_have_count(7 + 4 + 4 + 3 + 2 + 1)
    assert set(_thumbnails(page)) == {112}

    # name a group: its faces become a person of the gallery
    alex = api.face("gallery/alex_lacamoire/img1.jpg")["group"]
    _group(page, alex).get_by_label(f"Who is group {alex}?").fill("alex")
    _group(page, alex).get_by_role("button", name="Name", exact=True).click()
    _status(page, f"Group {alex} is alex: 2 faces enrolled.")
    expect(_group(page, alex).locator(".group-title")).to_have_text("alex · 2 faces")
    expect(page.locator("#people-list .person")).to_have_text(["alex (2 photos)"])

    # a refused correction shows the server's reason, naming both groups
    rose = api.face("gallery/rose_leslie/img1.jpg")["group"]
    _group(page, rose).get_by_label(f"Who is group {rose}?").fill("alex")
    _group(page, rose).get_by_role("button", name="Name", exact=True).click()
    _status(
        page, f"'alex' is the name of group {alex} already; merge group {rose} into it instead", error=True
    )

    # merge two groups: an over-split (one photo moved out of obama's group) and its person
    obama = api.face("gallery/obama/obama.jpg")["group"]
    stray = api.face("gallery/obama/obama2.jpg")["id"]
    moved = api.http.post(f"/libraries/family/faces/{stray}/move", json={"group": None}).json()["group"]["id"]
    page.locator("#library-refresh").click()
    expect(_group(page, moved).locator(".group-title")).to_have_text("unnamed · 1 face")
    page.get_by_role("button", name="Merge selected groups").click()
    _status(page, "Tick two or more groups to merge them.", error=True)
    _group(page, obama).get_by_label(f"Select group {obama}").check()
    _group(page, moved).get_by_label(f"Select group {moved}").check()
    page.get_by_role("button", name="Merge selected groups").click()
    _status(page, f"Merged 2 groups into group {obama} (unnamed · 7 faces).")
    expect(_group(page, moved)).to_have_count(0)

    # "not this person" on one face of biden's group
    biden = api.face("gallery/biden/biden.jpg")["group"]
    wrong = api.face("gallery/biden/biden2.jpg")["id"]
    _group(page, biden).get_by_role("button", name=f"Face {wrong} is not group {biden}").click()
    _status(page, f"Face {wrong} is not group {biden}; it left the group for good.")
    expect(_group(page, biden).locator(".group-title")).to_have_text("unnamed · 3 faces")
    expect(page.locator("article.loose .group-title")).to_have_text("In no group · 2 faces")

    # split a face off kit's group
    kit = api.face("gallery/kit_harington/john1.jpeg")["group"]
    snow = api.face("probes/johnsnow_test1.jpg")["id"]
    _group(page, kit).get_by_label(f"Select face {snow}").check()
    _group(page, kit).get_by_role("button", name="Split off ticked faces").click()
    _status(page, f"Split 1 face off group {kit} into group")
    assert set(_thumbnails(page)) == {112}
    page.screenshot(path=str(tmp_path / "library.png"), full_page=True)
    shutil.copyfile(tmp_path / "library.png", SCREENSHOT)

    # the library as the API sees it now
    groups = api.groups()
    assert (groups[alex]["name"], groups[alex]["faces"], groups[alex]["anchored"]) == ("alex", 2, True)
    assert (groups[obama]["faces"], groups[obama]["anchored"]) == (7, True) and moved not in groups
    assert groups[biden]["faces"] == 3 and groups[kit]["faces"] == 3
    rejected = api.face("gallery/biden/biden2.jpg")
    assert rejected["group"] is None
    back = api.http.post(f"/libraries/family/faces/{wrong}/move", json={"group": biden})
    assert back.status_code == 409  # "not this person" holds
    assert [(p["name"], p["faces"]) for p in api.get("/galleries/family/people")] == [("alex", 2)]

    page.set_viewport_size({"width": 360, "height": 740})  # the groups wrap on a phone
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
