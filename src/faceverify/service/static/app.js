// The faceverify page: plain JavaScript over the /v1 API. Server text is only ever set
// with textContent, never parsed as HTML. The API key lives in sessionStorage (this tab).
"use strict";

const KEY_STORAGE = "faceverify-api-key";
const $ = (id) => document.getElementById(id);

function say(message, isError = false) {
  const status = $("status");
  status.textContent = message;
  status.classList.toggle("error", isError);
  status.setAttribute("role", isError ? "alert" : "status");
}

// The answer to a request with the tab's key; an error answer is thrown as an Error.
async function send(method, path, body) {
  const headers = {};
  const key = sessionStorage.getItem(KEY_STORAGE);
  if (key) headers["X-API-Key"] = key;
  if (body && !(body instanceof FormData)) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(body);
  }
  const response = await fetch(path, { method, headers, body });
  if (!response.ok) {
    let data = null;
    try {
      data = await response.json();
    } catch (_) {
      data = null;
    }
    const error = (data && data.error) || { code: "http_" + response.status, message: response.statusText };
    if (response.status === 401) error.message += " Paste an API key above.";
    throw Object.assign(new Error(error.message), { code: error.code });
  }
  return response;
}

async function api(method, path, body) {
  const response = await send(method, path, body);
  if (response.status === 204) return null;
  try {
    return await response.json();
  } catch (_) {
    return null;
  }
}

function guarded(button, work) {
  return async (event) => {
    if (event) event.preventDefault();
    button.disabled = true;
    try {
      await work();
    } catch (error) {
      say(error.message, true);
    } finally {
      button.disabled = false;
    }
  };
}

// --- photos with boxes ------------------------------------------------------------------

function photoFigure(file, caption, faces, labelOf) {
  const figure = document.createElement("figure");
  figure.className = "photo";
  const frame = document.createElement("div");
  frame.className = "frame";
  const img = document.createElement("img");
  img.src = URL.createObjectURL(file);
  img.alt = caption;
  img.addEventListener("load", () => URL.revokeObjectURL(img.src), { once: true });
  frame.append(img);
  img.addEventListener("load", () => {
    const width = img.naturalWidth, height = img.naturalHeight;
    faces.forEach((face, index) => {
      const box = document.createElement("div");
      box.className = "box" + (face.known === false ? " unknown" : "");
      box.style.left = (100 * face.box.left / width) + "%";
      box.style.top = (100 * face.box.top / height) + "%";
      box.style.width = (100 * (face.box.right - face.box.left) / width) + "%";
      box.style.height = (100 * (face.box.bottom - face.box.top) / height) + "%";
      const label = labelOf(face, index);
      if (label) {
        const tag = document.createElement("span");
        tag.className = "tag";
        tag.textContent = label;
        box.append(tag);
      }
      frame.append(box);
    });
  }, { once: true });
  const text = document.createElement("figcaption");
  text.textContent = caption;
  figure.append(frame, text);
  return figure;
}

// --- drop zones -------------------------------------------------------------------------

function enableDrop(zone) {
  const input = zone.querySelector("input[type=file]");
  const hint = zone.querySelector(".hint");
  const original = hint.textContent;
  const show = () => {
    const names = Array.from(input.files).map((f) => f.name);
    hint.textContent = names.length ? names.join(", ") : original;
  };
  input.addEventListener("change", show);
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    const files = event.dataTransfer.files;
    if (!files.length) return;
    const transfer = new DataTransfer();
    const wanted = input.multiple ? Array.from(files) : [files[0]];
    wanted.forEach((f) => transfer.items.add(f));
    input.files = transfer.files;
    show();
  });
}

// --- verify -----------------------------------------------------------------------------

async function verifyPhotos() {
  const a = $("verify-a").files[0], b = $("verify-b").files[0];
  if (!a || !b) throw new Error("Choose two photos first.");
  const form = new FormData();
  form.append("a", a);
  form.append("b", b);
  say("Comparing…");
  const result = await api("POST", "/v1/verify", form);
  const photos = $("verify-photos");
  photos.replaceChildren(
    photoFigure(a, "Photo A: " + a.name, [result.a], () => "A"),
    photoFigure(b, "Photo B: " + b.name, [result.b], () => "B"),
  );
  const verdict = $("verify-verdict");
  const relation = result.same ? "≥" : "<";
  verdict.textContent = (result.same ? "Same person" : "Different people") +
    ` — score ${result.score.toFixed(3)} ${relation} threshold ${result.threshold.toFixed(3)}`;
  verdict.dataset.same = String(result.same);
  verdict.className = "verdict " + (result.same ? "same" : "different");
  $("verify-result").hidden = false;
  say("Compared.");
}

// --- galleries ----------------------------------------------------------------------------

function gallery() {
  const name = $("gallery-select").value;
  if (!name) throw new Error("Create or choose a gallery first.");
  return name;
}

async function loadGalleries(select) {
  const list = await api("GET", "/v1/galleries");
  const choose = $("gallery-select");
  const keep = select || choose.value;
  choose.replaceChildren(...list.map((g) => {
    const option = document.createElement("option");
    option.value = g.name;
    option.textContent = `${g.name} (${g.people} ${g.people === 1 ? "person" : "people"})`;
    return option;
  }));
  if (list.some((g) => g.name === keep)) choose.value = keep;
  const library = $("library-gallery");
  const keepLibrary = library.value || choose.value;
  library.replaceChildren(...Array.from(choose.options).map((option) => option.cloneNode(true)));
  if (list.some((g) => g.name === keepLibrary)) library.value = keepLibrary;
  await Promise.all([loadPeople(), loadLibrary()]);
}

async function loadPeople() {
  const target = $("people-list");
  const name = $("gallery-select").value;
  if (!name) {
    target.replaceChildren();
    return;
  }
  const people = await api("GET", `/v1/galleries/${encodeURIComponent(name)}/people`);
  target.replaceChildren(...people.map((person) => {
    const item = document.createElement("li");
    const label = document.createElement("span");
    label.className = "person";
    label.textContent = `${person.name} (${person.faces} ${person.faces === 1 ? "photo" : "photos"})`;
    const remove = document.createElement("button");
    remove.type = "button";
    remove.textContent = "Remove";
    remove.setAttribute("aria-label", `Remove ${person.name}`);
    remove.addEventListener("click", guarded(remove, async () => {
      if (!window.confirm(`Remove ${person.name} and all their photos?`)) return;
      // by id: a name never travels as a path segment, so no name can be read as another path
      const path = `/v1/galleries/${encodeURIComponent(name)}/people?id=${encodeURIComponent(person.id)}`;
      await api("DELETE", path);
      say(`Removed ${person.name}.`);
      await loadGalleries();
    }));
    item.append(label, remove);
    return item;
  }));
  if (!people.length) {
    const empty = document.createElement("li");
    empty.textContent = "Nobody enrolled yet.";
    target.append(empty);
  }
}

async function createGallery() {
  const name = $("gallery-name").value.trim();
  await api("POST", "/v1/galleries", { name });
  $("gallery-name").value = "";
  say(`Created gallery ${name}.`);
  await loadGalleries(name);
}

async function enrollPerson() {
  const name = $("enroll-name").value.trim();
  const files = $("enroll-photos").files;
  if (!name || !files.length) throw new Error("Give a name and at least one photo.");
  const form = new FormData();
  form.append("name", name);
  Array.from(files).forEach((file) => form.append("images", file));
  say(`Enrolling ${name}…`);
  const result = await api("POST", `/v1/galleries/${encodeURIComponent(gallery())}/people`, form);
  const skipped = result.skipped.length ? ` (${result.skipped.length} skipped: ${result.skipped.join("; ")})` : "";
  say(`Enrolled ${result.name} with ${result.added} ${result.added === 1 ? "photo" : "photos"}${skipped}.`);
  $("enroll-form").reset();
  $("enroll-photos").dispatchEvent(new Event("change"));  // the drop zone shows its hint again
  await loadGalleries();
}

async function identifyPhoto() {
  const file = $("identify-photo").files[0];
  if (!file) throw new Error("Choose a photo first.");
  const form = new FormData();
  form.append("image", file);
  say("Identifying…");
  const result = await api("POST", `/v1/galleries/${encodeURIComponent(gallery())}/identify`, form);
  const labelOf = (face) => face.name || "unknown";
  $("identify-photos").replaceChildren(photoFigure(file, file.name, result.faces, labelOf));
  $("identify-list").replaceChildren(...result.faces.map((face, index) => {
    const item = document.createElement("li");
    const best = face.matches.length ? face.matches[0].score.toFixed(3) : "–";
    item.textContent = `Face ${index + 1}: ${labelOf(face)} (best score ${best})`;
    return item;
  }));
  $("identify-result").hidden = false;
  const count = result.faces.length;
  say(`${count} ${count === 1 ? "face" : "faces"} found.`);
}

// --- photo library ------------------------------------------------------------------------

// Thumbnails are fetched with the key (an <img src> cannot send it) and shown from blob: URLs;
// groups whose every face is shown stay so when the list is drawn again.
const library = { urls: [], expanded: new Set() };

function libraryPath(rest) {
  const name = $("library-gallery").value;
  if (!name) throw new Error("Create or choose a gallery first.");
  return `/v1/libraries/${encodeURIComponent(name)}${rest}`;
}

const plural = (count, one, many) => `${count} ${count === 1 ? one : many}`;
const groupLabel = (group) => `${group.name || "unnamed"} · ${plural(group.faces, "face", "faces")}`;

async function showThumbnail(img, path) {
  try {
    const blob = await (await send("GET", path)).blob();
    const url = URL.createObjectURL(blob);
    library.urls.push(url);
    img.src = url;
  } catch (error) {
    img.alt += ` (no thumbnail: ${error.message})`;
  }
}

function element(tag, className, text) {
  const made = document.createElement(tag);
  if (className) made.className = className;
  if (text !== undefined) made.textContent = text;
  return made;
}

function faceItem(base, faceId, group) {
  const item = element("li", "face");
  item.dataset.face = faceId;
  const box = element("input", "face-select");
  box.type = "checkbox";
  box.id = `face-${faceId}`;
  box.dataset.face = faceId;
  box.setAttribute("aria-label", `Select face ${faceId}`);
  const label = document.createElement("label");
  label.htmlFor = box.id;
  const img = element("img");
  img.alt = `Face ${faceId}`;
  img.width = img.height = 96;
  label.append(img);
  showThumbnail(img, `${base}/faces/${faceId}/image`);
  item.append(box, label);
  if (group) {
    const reject = element("button", "face-reject", "Not this person");
    reject.type = "button";
    reject.setAttribute("aria-label", `Face ${faceId} is not ${group.name || "group " + group.id}`);
    reject.addEventListener("click", guarded(reject, async () => {
      await api("POST", `${base}/faces/${faceId}/reject`, { group: group.id });
      await loadLibrary();
      say(`Face ${faceId} is not ${group.name || "group " + group.id}; it left the group for good.`);
    }));
    item.append(reject);
  }
  return item;
}

function nameForm(base, group) {
  const form = element("form", "row group-name");
  const input = element("input");
  input.id = `group-${group.id}-name`;
  input.required = true;
  input.maxLength = 200;
  input.placeholder = "Who is this?";
  const label = element("label", "sr-only", `Who is group ${group.id}?`);
  label.htmlFor = input.id;
  const submit = element("button", "", "Name");
  submit.type = "submit";
  form.append(label, input, submit);
  form.addEventListener("submit", guarded(submit, async () => {
    const name = input.value.trim();
    const result = await api("POST", `${base}/groups/${group.id}/name`, { name });
    await loadGalleries();  // a new person in the gallery
    say(`Group ${group.id} is ${result.group.name}: ${plural(result.enrolled, "face", "faces")} enrolled.`);
  }));
  return form;
}

function groupArticle(base, group, faceIds) {
  const article = element("article", "group");
  article.dataset.group = group.id;
  const head = element("div", "group-head");
  const pick = element("input", "group-select");
  pick.type = "checkbox";
  pick.dataset.group = group.id;
  pick.setAttribute("aria-label", `Select group ${group.id}`);
  const title = element("h3", "group-title", groupLabel(group));
  head.append(pick, title);
  if (!group.name) head.append(nameForm(base, group));
  const split = element("button", "group-split", "Split off ticked faces");
  split.type = "button";
  split.addEventListener("click", guarded(split, async () => {
    const faces = Array.from(article.querySelectorAll(".face-select:checked"), (box) => Number(box.dataset.face));
    if (!faces.length) throw new Error(`Tick faces of group ${group.id} to split them off.`);
    const result = await api("POST", `${base}/groups/${group.id}/split`, { faces });
    await loadLibrary();
    say(`Split ${plural(faces.length, "face", "faces")} off group ${group.id} into group ${result.new.id}.`);
  }));
  head.append(split);
  if (faceIds.length < group.faces) {
    const all = element("button", "group-all", `Show all ${group.faces} faces`);
    all.type = "button";
    all.addEventListener("click", guarded(all, async () => {
      library.expanded.add(group.id);
      await loadLibrary();
    }));
    head.append(all);
  }
  const list = element("ul", "faces");
  list.setAttribute("aria-label", `Faces of group ${group.id}`);
  list.append(...faceIds.map((id) => faceItem(base, id, group)));
  article.append(head, list);
  return article;
}

function looseArticle(base, faces) {
  const article = element("article", "group loose");
  const shown = faces.slice(0, 60);
  const more = faces.length > shown.length ? ` (the first ${shown.length} shown)` : "";
  article.append(element("h3", "group-title", `In no group · ${plural(faces.length, "face", "faces")}${more}`));
  const list = element("ul", "faces");
  list.setAttribute("aria-label", "Faces in no group");
  list.append(...shown.map((face) => faceItem(base, face.id, null)));
  article.append(list);
  return article;
}

async function loadLibrary() {
  const target = $("library-groups");
  if (!$("library-gallery").value) {
    target.replaceChildren();
    return;
  }
  const base = libraryPath("");
  const [groups, loose] = await Promise.all([
    api("GET", `${base}/groups`),
    api("GET", `${base}/faces?ungrouped=true`),
  ]);
  const shown = groups.filter((group) => group.faces > 0);
  const known = new Set(shown.map((group) => group.id));
  library.expanded.forEach((id) => known.has(id) || library.expanded.delete(id));
  const faceLists = await Promise.all(shown.map(async (group) => library.expanded.has(group.id)
    ? (await api("GET", `${base}/groups/${group.id}/faces`)).map((face) => face.id)
    : group.sample));
  const old = library.urls;
  library.urls = [];
  const articles = shown.map((group, index) => groupArticle(base, group, faceLists[index]));
  if (loose.length) articles.push(looseArticle(base, loose));
  if (!articles.length) articles.push(element("p", "hint", "No faces yet: scan a folder of photos."));
  target.replaceChildren(...articles);
  old.forEach((url) => URL.revokeObjectURL(url));
  const options = [["", "a new group"], ...shown.map((g) => [String(g.id), `group ${g.id}: ${groupLabel(g)}`])];
  $("library-move-target").replaceChildren(...options.map(([value, text]) => {
    const option = element("option", "", text);
    option.value = value;
    return option;
  }));
}

function ticked(selector, field) {
  return Array.from($("library-groups").querySelectorAll(`${selector}:checked`), (box) => Number(box.dataset[field]));
}

async function mergeGroups() {
  const [target, ...others] = ticked(".group-select", "group");
  if (!others.length) throw new Error("Tick two or more groups to merge them.");
  const result = await api("POST", libraryPath("/merge"), { target, others });
  await loadGalleries();  // a named group's person gains faces
  say(`Merged ${plural(others.length + 1, "group", "groups")} into group ${result.id} (${groupLabel(result)}).`);
}

async function moveFaces() {
  const faces = ticked(".face-select", "face");
  if (!faces.length) throw new Error("Tick the faces to move.");
  let group = $("library-move-target").value ? Number($("library-move-target").value) : null;
  for (const face of faces) {  // the first makes the new group, if asked; the rest join it
    group = (await api("POST", libraryPath(`/faces/${face}/move`), { group })).group.id;
  }
  await loadGalleries();
  say(`Moved ${plural(faces.length, "face", "faces")} to group ${group}.`);
}

async function scanFolder() {
  const folder = $("library-folder").value.trim();
  say(`Scanning ${folder}…`);
  const scanned = await api("POST", libraryPath("/scan"), { folder });
  const grouped = await api("POST", libraryPath("/group"), { full: false });
  const failed = scanned.failed.length ? `, ${scanned.failed.length} unreadable` : "";
  await loadLibrary();
  say(`Scanned ${plural(scanned.photos, "photo", "photos")} (${scanned.new} new${failed}): ` +
    `${plural(scanned.faces_added, "face", "faces")} added; ${plural(grouped.groups, "group", "groups")}.`);
}

async function regroup() {
  const grouped = await api("POST", libraryPath("/group"), { full: false });
  await loadLibrary();
  say(`${plural(grouped.faces, "face", "faces")}: ${grouped.grouped} in ` +
    `${plural(grouped.groups, "group", "groups")}, ${grouped.alone} alone.`);
}

// --- wiring -----------------------------------------------------------------------------

function useKey(event) {
  event.preventDefault();
  const value = $("api-key").value.trim();
  if (value) sessionStorage.setItem(KEY_STORAGE, value);
  $("api-key").value = "";
  $("key-state").textContent = value ? "Key set for this tab." : "Kept in this tab only (sessionStorage).";
  loadGalleries().then(() => say("Galleries loaded."), (error) => say(error.message, true));
}

function forgetKey() {
  sessionStorage.removeItem(KEY_STORAGE);
  $("key-state").textContent = "Key forgotten.";
}

// `faceverify serve` prints the page's address with its new key after "#key=": the fragment
// never reaches a server; the key moves to sessionStorage and leaves the address bar.
function keyFromAddress() {
  const match = /^#key=([A-Za-z0-9_-]+)$/.exec(window.location.hash);
  if (!match) return;
  sessionStorage.setItem(KEY_STORAGE, match[1]);
  history.replaceState(null, "", window.location.pathname + window.location.search);
}

document.addEventListener("DOMContentLoaded", () => {
  keyFromAddress();
  document.querySelectorAll(".drop").forEach(enableDrop);
  $("key-form").addEventListener("submit", useKey);
  $("forget-key").addEventListener("click", forgetKey);
  if (sessionStorage.getItem(KEY_STORAGE)) $("key-state").textContent = "Key set for this tab.";
  const bind = (form, work) => {
    const button = $(form).querySelector("button[type=submit]");
    $(form).addEventListener("submit", guarded(button, work));
  };
  bind("verify-form", verifyPhotos);
  bind("gallery-create", createGallery);
  bind("enroll-form", enrollPerson);
  bind("identify-form", identifyPhoto);
  $("gallery-select").addEventListener("change", () => loadPeople().catch((e) => say(e.message, true)));
  $("gallery-refresh").addEventListener("click", () => loadGalleries().catch((e) => say(e.message, true)));
  bind("library-scan", scanFolder);
  const click = (id, work) => $(id).addEventListener("click", guarded($(id), work));
  click("library-merge", mergeGroups);
  click("library-move", moveFaces);
  click("library-regroup", regroup);
  click("library-refresh", loadLibrary);
  $("library-gallery").addEventListener("change", () => {
    library.expanded.clear();
    loadLibrary().catch((e) => say(e.message, true));
  });
  loadGalleries().catch((error) => say(error.message, true));
});
