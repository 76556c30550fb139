#!/usr/bin/env bash
# Build llama.cpp's own server (and, on request, its bench tools) into a virtualenv's bin folder.
#
#   scripts/build_llama_server.sh VENV [TARGET...]      (default target: llama-server)
#
# The source is the llama.cpp tree vendored in the llama-cpp-python sdist on PyPI (the only
# registry this project may download from), pinned by version and by the sdist's SHA-256, so the
# server is built from reviewed source rather than a downloaded binary. The build is static
# (one self-contained executable) and portable: GGML_NATIVE=OFF, since a native build on CPUs
# that advertise AMX (as this machine's Xeons do) crashes in ggml's AMX kernels
# (ggml-org/llama.cpp#20824); AVX2/FMA/F16C keep it fast on any x86-64 from the last decade.
# The source and build folders stay in VENV/src so that later targets build incrementally.
set -euo pipefail

venv=${1:?usage: build_llama_server.sh VENV [TARGET...]}
shift
targets=("${@:-llama-server}")
version=0.3.36
sha256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
src="$venv/src/llama-cpp-python-$version"
build="$src/build"

if [ ! -f "$src/.unpacked" ]; then
  download=$(mktemp -d)
  trap 'rm -rf "$download"' EXIT
  "$venv/bin/pip" download --quiet --no-deps --no-binary :all: "llama-cpp-python==$version" -d "$download"
  archive="$download/llama_cpp_python-$version.tar.gz"
  echo "$sha256  $archive" | sha256sum --check --quiet
  rm -rf "$src" && mkdir -p "$src"
  tar -xzf "$archive" -C "$src" --strip-components=1
  touch "$src/.unpacked"
fi

cmake_bin=$(command -v cmake || true)
if [ -z "$cmake_bin" ]; then  # llama.cpp needs CMake >= 3.14; PyPI ships it as a wheel
  "$venv/bin/pip" install --quiet "cmake==3.31.6"
  cmake_bin="$venv/bin/cmake"
fi

"$cmake_bin" -S "$src/vendor/llama.cpp" -B "$build" -DCMAKE_BUILD_TYPE=Release \
  -DBUILD_SHARED_LIBS=OFF -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
  -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF >"$build.log" 2>&1 || { cat "$build.log"; exit 1; }
"$cmake_bin" --build "$build" --config Release -j "$(nproc)" --target "${targets[@]}" >>"$build.log" 2>&1 ||
  { tail -50 "$build.log"; exit 1; }
for target in "${targets[@]}"; do
  install -m 755 "$build/bin/$target" "$venv/bin/$target"
done
