#!/usr/bin/env bash
# The main job, end to end: embed a folder of face images, then verify two pairs.
# Usage: scripts/demo.sh [FOLDER]   (FOLDER holds one sub-folder per person)
# Offline? Set WEIGHTS=/path/model.safetensors, or pre-fill the HF cache and set HF_HUB_OFFLINE=1.
set -euo pipefail
folder="${1:-${IMAGES:-../shared/faces/gallery}}"
fv="${FACEVERIFY:-.venv/bin/faceverify}"
weights=()
if [[ -n "${WEIGHTS:-}" ]]; then weights=(--weights "$WEIGHTS"); fi
if [[ ! -d "$folder" ]]; then
  echo "demo: folder '$folder' not found; pass a folder of face images (one sub-folder per person)" >&2
  exit 1
fi

mkdir -p out
echo "== embedding every image under $folder -> out/embeddings.npy" >&2
"$fv" embed "$folder" --out out/embeddings.npy "${weights[@]}"

# A pair of the same person (first sub-folder with two images) and a pair of two people.
mapfile -t people < <(find "$folder" -mindepth 1 -maxdepth 1 -type d | sort)
same=() diff=()
for person in "${people[@]}"; do
  mapfile -t imgs < <(find "$person" -type f | sort)
  if (( ${#imgs[@]} >= 2 && ${#same[@]} == 0 )); then same=("${imgs[0]}" "${imgs[1]}"); fi
  if (( ${#imgs[@]} >= 1 && ${#diff[@]} < 2 )); then diff+=("${imgs[0]}"); fi
done
if (( ${#same[@]} == 2 )); then
  echo "== same person? ${same[0]} vs ${same[1]}" >&2
  "$fv" verify "${same[@]}" "${weights[@]}"
fi
if (( ${#diff[@]} == 2 )); then
  echo "== same person? ${diff[0]} vs ${diff[1]}" >&2
  "$fv" verify "${diff[@]}" "${weights[@]}"
fi
