// Runs the fuzz entry point (paramserver/fuzz/fuzz_entry.h) over the seed corpus and a few
// thousand mutated and random inputs, so every build exercises what libFuzzer does in
// clang builds: the decoder never crashes, the handler always answers, and an Error reply
// never leaves a table half-updated.
#include <gtest/gtest.h>

#include <random>

#include "paramserver/fuzz/fuzz_entry.h"

namespace weft::ps::fuzz {
namespace {

Bytes mutate(const Bytes& seed, std::mt19937_64& rng, const std::vector<Bytes>& corpus) {
  Bytes b = seed;
  const int edits = 1 + static_cast<int>(rng() % 4);
  for (int e = 0; e < edits; ++e) {
    const size_t at = b.empty() ? 0 : rng() % b.size();
    switch (rng() % 7) {
      case 0:  // flip a bit (never byte 0, the mode)
        if (at > 0) b[at] ^= static_cast<uint8_t>(1u << (rng() % 8));
        break;
      case 1:  // truncate
        b.resize(at + 1);
        break;
      case 2:  // overwrite with an interesting value
        if (at > 0)
          b[at] = static_cast<uint8_t>(std::vector<int>{0, 1, 0x7f, 0x80, 0xff}[rng() % 5]);
        break;
      case 3:  // insert random bytes
        b.insert(b.begin() + static_cast<ptrdiff_t>(at), rng() % 9, static_cast<uint8_t>(rng()));
        break;
      case 4: {  // splice another seed's tail
        const Bytes& other = corpus[rng() % corpus.size()];
        const size_t from = other.empty() ? 0 : rng() % other.size();
        b.resize(at + 1);
        b.insert(b.end(), other.begin() + static_cast<ptrdiff_t>(from), other.end());
        break;
      }
      case 5:  // set a 32-bit field to a large value
        for (size_t i = 0; i < 4 && at + i < b.size(); ++i) {
          if (at + i > 0) b[at + i] = 0xff;
        }
        break;
      default:  // switch to the structured mode
        if (!b.empty()) b[0] = static_cast<uint8_t>(rng() | 1);
        break;
    }
  }
  return b;
}

TEST(PsFuzz, SeedCorpusPasses) {
  const std::vector<Bytes> corpus = seedCorpus();
  EXPECT_GT(corpus.size(), 15u);
  for (const Bytes& input : corpus) {
    const Status st = runCodecInput(input);
    ASSERT_TRUE(st.isOk()) << st;
  }
}

TEST(PsFuzz, MutatedAndRandomInputsKeepInvariants) {
  const std::vector<Bytes> corpus = seedCorpus();
  std::mt19937_64 rng(20240601);
  for (int i = 0; i < 6000; ++i) {
    Bytes input;
    if (i % 10 == 9) {
      input.resize(rng() % 200);
      for (uint8_t& x : input) x = static_cast<uint8_t>(rng());
    } else {
      input = mutate(corpus[rng() % corpus.size()], rng, corpus);
    }
    const Status st = runCodecInput(input);
    ASSERT_TRUE(st.isOk()) << "input " << i << ": " << st;
  }
}

}  // namespace
}  // namespace weft::ps::fuzz
