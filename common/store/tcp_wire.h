// Internal: the TCP store wire format (see common/store/PROTOCOL.md, which is normative).
//
// Plain value types and pure functions; thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace weft::store_wire {

// "WFTS" as the first four bytes on the wire.
constexpr uint32_t kMagic = 0x53544657;
constexpr uint32_t kVersion = 1;
constexpr size_t kHelloSize = 8;           // u32 magic, u32 version
constexpr size_t kLengthSize = 4;          // the u32 that precedes every frame
constexpr uint32_t kMaxFrame = 64u << 20;  // max value of the length field (opcode + payload)
constexpr uint64_t kNoTimeout = UINT64_MAX;

enum class Op : uint8_t {
  // Requests (client -> server).
  kSet = 0x01,
  kGet = 0x02,
  kWait = 0x03,
  kAdd = 0x04,
  kCompareSet = 0x05,
  kErase = 0x06,
  kCheck = 0x07,
  // Replies (server -> client).
  kHelloOk = 0x80,
  kOk = 0x81,
  kValue = 0x82,
  kInt = 0x83,
  kBool = 0x84,
  kTimeout = 0x85,
  kError = 0x86,
};

// "SET", "GET", ... or "0x42" for unknown opcodes.
std::string opName(uint8_t op);

// The 8-byte hello a client sends first.
std::string encodeHello(uint32_t magic = kMagic, uint32_t version = kVersion);

// Builds one frame: {u32 length, u8 opcode, payload}.
class FrameWriter {
 public:
  explicit FrameWriter(Op op);
  FrameWriter& u8(uint8_t v);
  FrameWriter& u32(uint32_t v);
  FrameWriter& u64(uint64_t v);
  FrameWriter& i64(int64_t v) { return u64(static_cast<uint64_t>(v)); }
  FrameWriter& bytes(std::string_view s);  // u32 length + data
  // Patches the length field and moves the frame out (call once). Frames over kMaxFrame
  // are the caller's bug to avoid: check size() first.
  std::string finish();
  // Bytes of opcode + payload so far (the value the length field will hold).
  size_t size() const { return buf_.size() - kLengthSize; }

 private:
  std::string buf_;
};

// Reads the payload of one frame. Any read past the end sets failed() and returns zeros.
class FrameReader {
 public:
  explicit FrameReader(std::string_view payload) : data_(payload) {}
  uint8_t u8();
  uint32_t u32();
  uint64_t u64();
  int64_t i64() { return static_cast<int64_t>(u64()); }
  std::string_view bytes();
  bool failed() const { return failed_; }
  // True when everything was read without error and nothing is left over.
  bool complete() const { return !failed_ && pos_ == data_.size(); }
  size_t remaining() const { return data_.size() - pos_; }

 private:
  bool need(size_t n);
  std::string_view data_;
  size_t pos_ = 0;
  bool failed_ = false;
};

uint32_t loadU32(const char* p);

}  // namespace weft::store_wire
