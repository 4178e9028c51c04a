#include "paramserver/server/file_io.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "common/logging.h"
#include "paramserver/util/crc32c.h"

namespace weft::ps {
namespace {

Status ioError(std::string_view what, const std::string& path, int err) {
  return WEFT_ERROR(StatusCode::kIoError, what, " '", path, "' failed: ", errnoString(err));
}

}  // namespace

Result<AtomicFile> AtomicFile::create(const std::string& path) {
  const std::string tmp = path + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return ioError("creating checkpoint file", tmp, errno);
  return AtomicFile(path, fd);
}

AtomicFile::AtomicFile(AtomicFile&& other) noexcept
    : path_(std::move(other.path_)),
      fd_(other.fd_),
      crc_(other.crc_),
      size_(other.size_),
      committed_(other.committed_) {
  other.fd_ = -1;
  other.committed_ = true;
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) removeFileQuietly(path_ + ".tmp");
}

Status AtomicFile::write(std::span<const uint8_t> bytes) {
  crc_ = crc32c(bytes.data(), bytes.size(), crc_);
  size_ += bytes.size();
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd_, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ioError("writing", path_ + ".tmp", errno);
    done += static_cast<size_t>(n);
  }
  return Status::ok();
}

Status AtomicFile::commit() {
  const std::string tmp = path_ + ".tmp";
  if (::fsync(fd_) != 0) return ioError("fsync of", tmp, errno);
  const int rc = ::close(fd_);
  fd_ = -1;
  if (rc != 0) return ioError("closing", tmp, errno);
  if (::rename(tmp.c_str(), path_.c_str()) != 0) return ioError("renaming over", path_, errno);
  committed_ = true;
  return Status::ok();
}

Status makeDirectories(const std::string& dir) {
  for (size_t at = 1; at <= dir.size(); ++at) {
    if (at != dir.size() && dir[at] != '/') continue;
    const std::string prefix = dir.substr(0, at);
    if (::mkdir(prefix.c_str(), 0755) != 0 && errno != EEXIST) {
      return ioError("creating directory", prefix, errno);
    }
  }
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0) return ioError("stat of", dir, errno);
  if (!S_ISDIR(st.st_mode)) {
    return WEFT_ERROR(StatusCode::kIoError, "checkpoint path '", dir, "' is not a directory");
  }
  return Status::ok();
}

Status fsyncDirectory(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ioError("opening directory", dir, errno);
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0) return ioError("fsync of directory", dir, err);
  return Status::ok();
}

Result<Bytes> readWholeFile(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ioError("opening", path, errno);
  Bytes out;
  uint8_t buffer[1 << 16];
  for (;;) {
    const ssize_t n = ::read(fd, buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      return ioError("reading", path, err);
    }
    if (n == 0) break;
    out.insert(out.end(), buffer, buffer + n);
  }
  ::close(fd);
  return out;
}

Result<std::vector<std::string>> listDirectory(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return ioError("listing directory", dir, errno);
  std::vector<std::string> names;
  while (const dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (name != "." && name != "..") names.push_back(name);
  }
  ::closedir(d);
  return names;
}

void removeFileQuietly(const std::string& path) {
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    WEFT_LOG(kWarn, "ps") << "removing '" << path << "' failed: " << errnoString(errno);
  }
}

}  // namespace weft::ps
