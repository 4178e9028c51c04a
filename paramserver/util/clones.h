// WEFT_PS_HOT_CLONES: compiles a hot loop of the parameter server three times, for AVX-512
// (x86-64-v4), AVX2 (x86-64-v3) and the baseline, and lets the dynamic loader pick the one
// the CPU runs (GCC / clang target_clones, an ifunc). The baseline build targets x86-64
// (SSE2), so without it the per-push loops over gradients run 16 bytes at a time.
//
// Contract: a function attribute; results must not depend on the clone (files with float
// math that a clone could contract into FMA are built with -ffp-contract=off).
#pragma once

// Not under ThreadSanitizer: the ifunc resolver runs while the dynamic loader relocates the
// program, before TSan's runtime is up, and the instrumented resolver crashed the test
// binaries at start (GCC 12, CI's TSan stage).
#if defined(__SANITIZE_THREAD__)
#define WEFT_PS_NO_CLONES_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define WEFT_PS_NO_CLONES_TSAN 1
#endif
#endif

#if defined(__x86_64__) && defined(__ELF__) && !defined(WEFT_NO_CLONES) && \
    !defined(WEFT_PS_NO_CLONES_TSAN)
#define WEFT_PS_HOT_CLONES \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define WEFT_PS_HOT_CLONES
#endif
