#!/bin/bash
# Outputs of one checkout on the bundled example, to compare two versions byte for byte (a refactor or
# a speed change must leave them identical):
#   bench/compare_outputs.sh OLD_CHECKOUT /tmp/old && bench/compare_outputs.sh . /tmp/new
#   for f in /tmp/old/*; do cmp "$f" "/tmp/new/${f##*/}"; done
# (an old checkout: git archive REV | tar -x -C DIR). PYTHON: the interpreter (default: python3).
# Run it on an idle machine: x264 through PyAV does not always encode the same pictures to the same
# bytes while other processes load the CPU (seen on the 612x344 default render, in old and new trees
# alike; the pictures handed to the encoder were identical), so a busy run can differ in its MP4s.
set -euo pipefail
repo=$(cd "$1" && pwd); out=$2; mkdir -p "$out"; cd "$repo"
run() { PYTHONPATH="$repo" "${PYTHON:-python3}" -m pan360 "$@" --overwrite -q; }
run render examples/example.mp4 -o "$out/out.mp4" --trajectory-out "$out/path.json"
run saliency examples/example.mp4 -o "$out/heat.mp4" --maps-out "$out/maps.npz"
run render examples/example.mp4 -o "$out/out_small.mp4" --size 320x180 --saliency foa --cuts --max-speed 90 \
    --trajectory-out "$out/path_foa.json"
run render examples/example.mp4 -o "$out/out_path.mp4" --path "$out/path_foa.json" --size 256x256 --fov 70 \
    --trajectory-out "$out/path_given.json"
