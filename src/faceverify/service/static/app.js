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

async function api(method, path, body) {
  const headers = {};
  const key = sessionStorage.getItem(KEY_STORAGE);
  if (key) headers["X-API-Key"] = key;
  if (body && !(body instanceof FormData)) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(body);
  }
  const response = await fetch(path, { method, headers, body });
  if (response.status === 204) return null;
  let data = null;
  try {
    data = await response.json();
  } catch (_) {
    data = null;
  }
  if (!response.ok) {
    const error = (data && data.error) || { code: "http_" + response.status, message: response.statusText };
    if (response.status === 401) error.message += " Paste an API key above.";
    throw Object.assign(new Error(error.message), { code: error.code });
  }
  return data;
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
  await loadPeople();
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
  loadGalleries().catch((error) => say(error.message, true));
});
