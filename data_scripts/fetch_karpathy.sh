#!/usr/bin/env bash
# Lay out a Karpathy-split dataset for the full profile:
#   $TIGER_HOME/data/<name>/dataset_<name>.json   (Karpathy captions file)
#   $TIGER_HOME/data/<name>/images/               (the dataset's images)
# The images and the captions file are distributed under their own terms by their owners; this
# script only checks the layout and tells you where to put what you downloaded.
set -euo pipefail
name="${1:?usage: fetch_karpathy.sh flickr30k|coco}"
case "$name" in flickr30k|coco) ;; *) echo "error: unknown dataset '$name': use flickr30k or coco" >&2; exit 2;; esac
root="${TIGER_HOME:-$(cd "$(dirname "$0")/.." && pwd)/tiger_home}/data/$name"
mkdir -p "$root/images"
json="$root/dataset_$name.json"
if [ ! -s "$json" ]; then
  echo "error: $json is missing: download the Karpathy split file dataset_$name.json (caption_datasets.zip) and put it there" >&2
  exit 2
fi
n=$(find "$root/images" -type f | wc -l)
if [ "$n" -eq 0 ]; then
  echo "error: no images under $root/images: download the $name images and unpack them there" >&2
  exit 2
fi
python3 - "$json" "$root/images" <<'PY'
import sys
from tigerlib.data import load_karpathy
gallery, queries = load_karpathy(sys.argv[1], sys.argv[2], split="test")
print(f"ok: {len(gallery)} test images, {len(queries)} captions")
PY
