// The fuzz entry point of the wire decoder and the request handler, shared by the libFuzzer
// target (codec_fuzz.cc, clang builds with WEFT_FUZZ=ON) and a gtest that replays generated
// and mutated inputs in every build (tests/unit/ps_fuzz_test.cc).
//
// runCodecInput() feeds one input to the decoder and to a RequestHandler over a small fixed
// shard (tables of dim 1/4/2 with SGD, Adam+SSP, FTRL+admission+eviction) and checks:
//   1. a message that decodes re-encodes to the same bytes (the decoders are exact);
//   2. the handler answers with a message that decodes as a Reply or an Error to the same
//      request id;
//   3. after an Error reply every table is unchanged (no half-applied request).
// Input byte 0 picks the mode: even -> the remaining bytes are the message; odd -> a
// valid-looking header (magic, version, opcode/flags/counts from the next bytes) is put in
// front of the rest, so that mutations reach the payload decoders quickly.
//
// Contract: not thread-safe (one static shard, rebuilt every few hundred inputs).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "common/status.h"
#include "paramserver/wire/byte_io.h"

namespace weft::ps::fuzz {

// OK, or kInternal naming the violated invariant.
Status runCodecInput(std::span<const uint8_t> data);

// Valid messages of every request opcode (raw-mode inputs, byte 0 = 0), for mutation.
std::vector<Bytes> seedCorpus();

}  // namespace weft::ps::fuzz
