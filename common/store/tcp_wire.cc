#include "common/store/tcp_wire.h"

#include "common/status.h"

namespace weft::store_wire {

namespace {
void appendLe(std::string& out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
uint64_t loadLe(const char* p, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) {
    v |= static_cast<uint64_t>(static_cast<unsigned char>(p[i])) << (8 * i);
  }
  return v;
}
}  // namespace

std::string opName(uint8_t op) {
  switch (static_cast<Op>(op)) {
    case Op::kSet: return "SET";
    case Op::kGet: return "GET";
    case Op::kWait: return "WAIT";
    case Op::kAdd: return "ADD";
    case Op::kCompareSet: return "COMPARE_SET";
    case Op::kErase: return "ERASE";
    case Op::kCheck: return "CHECK";
    case Op::kHelloOk: return "HELLO_OK";
    case Op::kOk: return "OK";
    case Op::kValue: return "VALUE";
    case Op::kInt: return "INT";
    case Op::kBool: return "BOOL";
    case Op::kTimeout: return "TIMEOUT";
    case Op::kError: return "ERROR";
  }
  static constexpr char kHex[] = "0123456789abcdef";
  return std::string("0x") + kHex[op >> 4] + kHex[op & 0xf];
}

std::string encodeHello(uint32_t magic, uint32_t version) {
  std::string out;
  appendLe(out, magic, 4);
  appendLe(out, version, 4);
  return out;
}

uint32_t loadU32(const char* p) { return static_cast<uint32_t>(loadLe(p, 4)); }

FrameWriter::FrameWriter(Op op) {
  buf_.assign(kLengthSize, '\0');
  buf_.push_back(static_cast<char>(op));
}

FrameWriter& FrameWriter::u8(uint8_t v) {
  buf_.push_back(static_cast<char>(v));
  return *this;
}
FrameWriter& FrameWriter::u32(uint32_t v) {
  appendLe(buf_, v, 4);
  return *this;
}
FrameWriter& FrameWriter::u64(uint64_t v) {
  appendLe(buf_, v, 8);
  return *this;
}
FrameWriter& FrameWriter::bytes(std::string_view s) {
  appendLe(buf_, s.size(), 4);
  buf_.append(s);
  return *this;
}

std::string FrameWriter::finish() {
  uint64_t len = buf_.size() - kLengthSize;
  for (size_t i = 0; i < kLengthSize; ++i) buf_[i] = static_cast<char>((len >> (8 * i)) & 0xff);
  return std::move(buf_);
}

bool FrameReader::need(size_t n) {
  if (failed_ || data_.size() - pos_ < n) {
    failed_ = true;
    return false;
  }
  return true;
}

uint8_t FrameReader::u8() {
  if (!need(1)) return 0;
  return static_cast<uint8_t>(data_[pos_++]);
}
uint32_t FrameReader::u32() {
  if (!need(4)) return 0;
  uint32_t v = static_cast<uint32_t>(loadLe(data_.data() + pos_, 4));
  pos_ += 4;
  return v;
}
uint64_t FrameReader::u64() {
  if (!need(8)) return 0;
  uint64_t v = loadLe(data_.data() + pos_, 8);
  pos_ += 8;
  return v;
}
std::string_view FrameReader::bytes() {
  uint32_t n = u32();
  if (!need(n)) return {};
  std::string_view s = data_.substr(pos_, n);
  pos_ += n;
  return s;
}

}  // namespace weft::store_wire
