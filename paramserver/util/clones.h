// WEFT_PS_HOT_CLONES: compiles a hot loop of the parameter server three times, for AVX-512
// (x86-64-v4), AVX2 (x86-64-v3) and the baseline, and lets the dynamic loader pick the one
// the CPU runs (GCC / clang target_clones, an ifunc). The baseline build targets x86-64
// (SSE2), so without it the per-push loops over gradients run 16 bytes at a time.
//
// Contract: a function attribute; results must not depend on the clone (files with float
// math that a clone could contract into FMA are built with -ffp-contract=off).
#pragma once

#if defined(__x86_64__) && defined(__ELF__) && !defined(WEFT_NO_CLONES)
#define WEFT_PS_HOT_CLONES \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define WEFT_PS_HOT_CLONES
#endif
