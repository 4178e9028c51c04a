#!/usr/bin/env bash
# Builds, on this (GPU-less) machine, the small bundle that scripts/gpu/device-check.sh runs on
# a GPU machine: weft_gpu_tests, weft-gpu-reduce-bench and weft-info, Release, CUDA on, UCX and
# verbs off, cudart and GoogleTest static, so that the binaries need nothing at run time but
# glibc, libstdc++ and the NVIDIA driver's libcuda.so.1 (loaded with dlopen). libstdc++ stays
# shared on purpose: Debian's static libstdc++/libgcc pull in glibc 2.35/2.36 symbols
# (arc4random, _dl_find_object) that Ubuntu 22.04 lacks; our own code needs glibc <= 2.34.
#
#   scripts/gpu/build-device-check.sh [BUILD_DIR [BUNDLE_DIR]]
#     BUILD_DIR   default build-gpu-dev  (the CMake build; large, stays here)
#     BUNDLE_DIR  default .gpu-bundle    (bin/ + device-check.sh; a few MiB: carry this one)
# Then on the GPU machine: scripts/gpu/device-check.sh .gpu-bundle "$OUT"
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build-gpu-dev}
bundle=${2:-.gpu-bundle}
jobs=${WEFT_BUILD_JOBS:-2}

# WEFT_WERROR=OFF: with UCX and verbs off, transport/core/context.cc trips -Wundef.
mkdir -p "$build"
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DWEFT_WERROR=OFF \
  -DWEFT_WITH_CUDA=ON -DWEFT_WITH_UCX=OFF -DWEFT_WITH_VERBS=OFF -DWEFT_WITH_TORCH=OFF \
  -DCMAKE_EXE_LINKER_FLAGS="" >"$build/configure.log" ||
  { cat "$build/configure.log"; exit 1; }
grep "weft: " "$build/configure.log" || true
cmake --build "$build" -j "$jobs" --target weft_gpu_tests weft-gpu-reduce-bench weft-info

rm -rf "$bundle"
mkdir -p "$bundle/bin"
for b in weft_gpu_tests weft-gpu-reduce-bench weft-info; do
  cp "$build/bin/$b" "$bundle/bin/"
  strip --strip-debug "$bundle/bin/$b"
done
cp scripts/gpu/device-check.sh "$bundle/"

# Run-time dependencies: only glibc's and GCC's runtime libraries (and the vDSO / loader).
status=0
for b in "$bundle"/bin/*; do
  echo "== ldd $b"
  ldd "$b"
  if ldd "$b" | grep -v -E 'linux-vdso|ld-linux|lib(c|m|dl|rt|pthread|stdc\+\+|gcc_s)\.so' | grep -q .; then
    echo "ERROR: $b needs more than glibc at run time" >&2
    status=1
  fi
  newest=$(objdump -T "$b" | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -1)
  newestxx=$(objdump -T "$b" | grep -o 'GLIBCXX_[0-9.]*' | sort -uV | tail -1)
  echo "   newest symbol versions: $newest $newestxx (Ubuntu 22.04: GLIBC_2.35 GLIBCXX_3.4.30)"
  case $newest in GLIBC_2.3[6-9] | GLIBC_2.[4-9]*)
    echo "ERROR: $b needs $newest: too new for Ubuntu 22.04" >&2
    status=1 ;;
  esac
done
du -sh "$bundle"
exit $status
