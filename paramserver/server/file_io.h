// Small POSIX file helpers for checkpoints: durable atomic replacement of a file, whole-file
// reads, directory creation and fsync. Errors name the path and errno text.
//
// Contract: not thread-safe per object; distinct objects/paths may be used concurrently.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "common/result.h"
#include "paramserver/wire/byte_io.h"

namespace weft::ps {

// Writes `<path>.tmp`, then commit() fsyncs it and renames it over `path` (atomic on POSIX
// file systems). Destroying an uncommitted AtomicFile removes the temporary file. The CRC32C
// and size of everything written are tracked for manifests.
class AtomicFile {
 public:
  static Result<AtomicFile> create(const std::string& path);
  AtomicFile(AtomicFile&& other) noexcept;
  AtomicFile& operator=(AtomicFile&&) = delete;
  AtomicFile(const AtomicFile&) = delete;
  ~AtomicFile();

  Status write(std::span<const uint8_t> bytes);
  Status commit();
  uint32_t crc() const { return crc_; }
  uint64_t size() const { return size_; }

 private:
  AtomicFile(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}

  std::string path_;
  int fd_ = -1;
  uint32_t crc_ = 0;
  uint64_t size_ = 0;
  bool committed_ = false;
};

Status makeDirectories(const std::string& dir);
// fsync of a directory makes renames inside it durable.
Status fsyncDirectory(const std::string& dir);
Result<Bytes> readWholeFile(const std::string& path);
// Names of the entries of a directory (no "." / "..").
Result<std::vector<std::string>> listDirectory(const std::string& dir);
void removeFileQuietly(const std::string& path);

}  // namespace weft::ps
