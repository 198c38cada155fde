#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (AddressSanitizer + UBSan) and runs each for a while.
#   scripts/fuzz.sh [SECONDS_PER_TARGET=60] [TARGET...]
# Corpora and crash reproducers go to build-fuzz/corpus/<target>/ and build-fuzz/.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
seconds="${1:-60}"; shift || true
targets=("${@:-fuzz_gguf fuzz_safetensors fuzz_tokenizer_json}")
targets=(${targets[*]})
build=build-fuzz
if [[ ! -f "$build/CMakeCache.txt" ]]; then
  CC=clang CXX=clang++ cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DECOMLA_FUZZ_ONLY=ON -DECOMLA_BUILD_TESTS=OFF -DECOMLA_BUILD_BENCH=OFF \
    -DCMAKE_CXX_FLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer"
fi
cmake --build "$build" --target "${targets[@]}"
for t in "${targets[@]}"; do
  mkdir -p "$build/corpus/$t"
  echo "==> $t for ${seconds}s" >&2
  "$build/tests/fuzz/$t" -max_total_time="$seconds" -max_len=65536 -artifact_prefix="$build/" \
    "$build/corpus/$t"
done
