#!/usr/bin/env bash
# The main job, end to end and offline, with a real face network (dlib's, installed from PyPI):
# embed a folder of photos, verify a same-person and a different-person pair, enrol everyone,
# identify every face in the probe photos, draw the answers onto a picture, and group every
# face of the folder by person (a photo library, with a contact sheet).
# Usage: scripts/demo.sh [GALLERY_FOLDER [PROBES_FOLDER]]  (GALLERY holds one sub-folder per person)
set -euo pipefail
gallery="${1:-${IMAGES:-../shared/faces/gallery}}"
probes="${2:-${PROBES:-$(dirname "$gallery")/probes}}"
fv="${FACEVERIFY:-.venv/bin/faceverify}"
model=(--model "${MODEL:-dlib_resnet_v1}")
if [[ ! -d "$gallery" ]]; then
  echo "demo: folder '$gallery' not found; pass a folder of photos (one sub-folder per person)" >&2
  exit 1
fi

out=out/demo
rm -rf "$out" && mkdir -p "$out"
echo "== embedding every photo under $gallery -> $out/embeddings.npy" >&2
"$fv" embed "$gallery" --out "$out/embeddings.npy" "${model[@]}"

# A pair of the same person (first sub-folder with two photos) and a pair of two people.
mapfile -t people < <(find "$gallery" -mindepth 1 -maxdepth 1 -type d | sort)
same=() diff=()
for person in "${people[@]}"; do
  mapfile -t imgs < <(find "$person" -type f | sort)
  if (( ${#imgs[@]} >= 2 && ${#same[@]} == 0 )); then same=("${imgs[0]}" "${imgs[1]}"); fi
  if (( ${#imgs[@]} >= 1 && ${#diff[@]} < 2 )); then diff+=("${imgs[0]}"); fi
done
if (( ${#same[@]} == 2 )); then
  echo "== same person? ${same[0]} vs ${same[1]}" >&2
  "$fv" verify "${same[@]}" "${model[@]}"
fi
if (( ${#diff[@]} == 2 )); then
  echo "== same person? ${diff[0]} vs ${diff[1]}" >&2
  "$fv" verify "${diff[@]}" "${model[@]}"
fi

echo "== enrolling ${#people[@]} people into $out/gallery" >&2
for person in "${people[@]}"; do
  "$fv" enroll "$(basename "$person")" "$person" "${model[@]}" --db "$out/gallery" -q
done

if [[ -d "$probes" ]]; then
  echo "== who is in each photo of $probes? (every face; 'unknown' when nobody enrolled matches)" >&2
  "$fv" detect "$probes" --db "$out/gallery" "${model[@]}" --annotate "$out/annotated" -q
  echo "== annotated photos: $out/annotated/*.png" >&2
fi

photos="$(dirname "$gallery")"
echo "== grouping every face under $photos by person (nobody named yet) -> $out/sheet.html" >&2
"$fv" cluster "$photos" --db "$out/library" "${model[@]}" --sheet "$out/sheet.html" -q || [[ $? == 3 ]]
"$fv" people list --db "$out/library"
echo "== contact sheet: $out/sheet.html (one row of faces per group; name one: faceverify people name ID NAME --db $out/library)" >&2
