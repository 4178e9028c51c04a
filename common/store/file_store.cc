// FileStore: a Store in a directory shared by the processes of one node.
//
// Layout: one file per key. The file name is "k_" + the key with every byte outside
// [A-Za-z0-9._-] written as %XX; when that is longer than kMaxEncodedName the name is
// "h_" + two independent 64-bit hashes of the key (hex). Values are the raw file contents.
// Writers create ".tmp.<pid>.<n>" and rename(2) it over the key's file, so readers see the
// old or the new value, never a torn one. Every mutation (set, add, compareSet, erase) holds
// flock(LOCK_EX) on "<dir>/.lock", which makes read-modify-write atomic across threads and
// processes (each call opens its own lock descriptor). Waiters poll with a short sleep.
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <filesystem>
#include <thread>

#include "common/store/store.h"
#include "common/store/store_util.h"

namespace weft {
namespace {

using store_internal::addCounter;
using store_internal::parseCounter;
using store_internal::quoteKey;
using store_internal::timeoutError;

constexpr size_t kMaxEncodedName = 200;
constexpr auto kMinPoll = std::chrono::milliseconds(1);
constexpr auto kMaxPoll = std::chrono::milliseconds(20);

uint64_t fnv1a(std::string_view s, uint64_t seed) {
  uint64_t h = seed;
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return h;
}

std::string hex64(uint64_t v) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out(16, '0');
  for (int i = 15; i >= 0; --i, v >>= 4) out[static_cast<size_t>(i)] = kHex[v & 0xf];
  return out;
}

std::string encodeKey(std::string_view key) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string name = "k_";
  for (unsigned char c : key) {
    bool safe = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                c == '.' || c == '_' || c == '-';
    if (safe) {
      name += static_cast<char>(c);
    } else {
      name += '%';
      name += kHex[c >> 4];
      name += kHex[c & 0xf];
    }
  }
  if (name.size() <= kMaxEncodedName) return name;
  // Two independently seeded hashes: 128 bits make a collision practically impossible.
  return "h_" + hex64(fnv1a(key, 0xcbf29ce484222325ULL)) +
         hex64(fnv1a(key, 0x84222325cbf29ce4ULL) ^ key.size());
}

// Closes the fd (and so releases the flock) on destruction.
class FileLock {
 public:
  FileLock() = default;
  explicit FileLock(int fd) : fd_(fd) {}
  FileLock(FileLock&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  FileLock& operator=(FileLock&&) = delete;
  ~FileLock() {
    if (fd_ >= 0) ::close(fd_);
  }

 private:
  int fd_ = -1;
};

class FileStore final : public Store {
 public:
  explicit FileStore(std::string dir) : dir_(std::move(dir)) {}

  Status init() {
    std::error_code ec;
    std::filesystem::create_directories(dir_, ec);
    if (ec) {
      return WEFT_ERROR(StatusCode::kIoError, describe(), ": cannot create directory '", dir_,
                        "': ", ec.message())
          .withHint("check the path and its permissions");
    }
    WEFT_ASSIGN_OR_RETURN(FileLock lock, lockDir("open"));
    return Status::ok();
  }

  Status set(std::string_view key, std::string_view value) override {
    WEFT_ASSIGN_OR_RETURN(FileLock lock, lockDir("set"));
    return writeKey(key, value, "set");
  }

  Result<std::string> get(std::string_view key, Deadline deadline) override {
    std::vector<std::string> keys{std::string(key)};
    while (true) {
      WEFT_RETURN_IF_ERROR(waitFor(keys, deadline, "get"));
      std::string value;
      WEFT_ASSIGN_OR_RETURN(bool found, readKey(key, "get", &value));
      if (found) return value;
      // Erased between the wait and the read: wait again.
    }
  }

  Status wait(const std::vector<std::string>& keys, Deadline deadline) override {
    return waitFor(keys, deadline, "wait");
  }

  Result<int64_t> add(std::string_view key, int64_t delta) override {
    WEFT_ASSIGN_OR_RETURN(FileLock lock, lockDir("add"));
    std::string value;
    WEFT_RETURN_IF_ERROR(readKey(key, "add", &value).status());
    WEFT_ASSIGN_OR_RETURN(int64_t current, parseCounter(value, key, describe()));
    WEFT_ASSIGN_OR_RETURN(int64_t sum, addCounter(current, delta, key, describe()));
    WEFT_RETURN_IF_ERROR(writeKey(key, std::to_string(sum), "add"));
    return sum;
  }

  Result<std::string> compareSet(std::string_view key, std::string_view expected,
                                 std::string_view desired) override {
    WEFT_ASSIGN_OR_RETURN(FileLock lock, lockDir("compareSet"));
    std::string current;  // stays "" for a missing key
    WEFT_RETURN_IF_ERROR(readKey(key, "compareSet", &current).status());
    if (current != expected) return current;
    WEFT_RETURN_IF_ERROR(writeKey(key, desired, "compareSet"));
    return std::string(desired);
  }

  Result<bool> erase(std::string_view key) override {
    WEFT_ASSIGN_OR_RETURN(FileLock lock, lockDir("erase"));
    std::string path = pathOf(key);
    if (::unlink(path.c_str()) == 0) return true;
    int err = errno;
    if (err == ENOENT) return false;
    return ioError("erase", key, "unlink", path, err);
  }

  Result<bool> check(std::string_view key) override {
    std::string path = pathOf(key);
    struct stat st {};
    if (::stat(path.c_str(), &st) == 0) return true;
    int err = errno;
    if (err == ENOENT) return false;
    return ioError("check", key, "stat", path, err);
  }

  std::string describe() const override { return "file:" + dir_; }

 private:
  std::string pathOf(std::string_view key) const { return dir_ + "/" + encodeKey(key); }

  Status ioError(std::string_view op, std::string_view key, std::string_view call,
                 const std::string& path, int err) const {
    return WEFT_ERROR(StatusCode::kIoError, describe(), ": ", op, "(", quoteKey(key), "): ",
                      call, "('", path, "') failed: ", errnoString(err));
  }

  Result<FileLock> lockDir(std::string_view op) const {
    std::string path = dir_ + "/.lock";
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
      int err = errno;
      return WEFT_ERROR(StatusCode::kIoError, describe(), ": ", op, ": open('", path,
                        "') failed: ", errnoString(err))
          .withHint("the store directory must be writable by every rank of the node");
    }
    FileLock lock(fd);
    while (::flock(fd, LOCK_EX) != 0) {
      int err = errno;
      if (err == EINTR) continue;
      return WEFT_ERROR(StatusCode::kIoError, describe(), ": ", op, ": flock('", path,
                        "') failed: ", errnoString(err));
    }
    return lock;
  }

  // Reads the key's value into *value; false (and *value untouched) when it does not exist.
  Result<bool> readKey(std::string_view key, std::string_view op, std::string* out) const {
    std::string path = pathOf(key);
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      int err = errno;
      if (err == ENOENT) return false;
      return ioError(op, key, "open", path, err);
    }
    FileLock closer(fd);
    std::string value;
    char buf[65536];
    while (true) {
      ssize_t n = ::read(fd, buf, sizeof(buf));
      if (n == 0) break;
      if (n < 0) {
        int err = errno;
        if (err == EINTR) continue;
        return ioError(op, key, "read", path, err);
      }
      value.append(buf, static_cast<size_t>(n));
    }
    *out = std::move(value);
    return true;
  }

  Status writeKey(std::string_view key, std::string_view value, std::string_view op) {
    static std::atomic<uint64_t> counter{0};
    std::string tmp = strCat(dir_, "/.tmp.", ::getpid(), ".", counter.fetch_add(1));
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) return ioError(op, key, "open", tmp, errno);
    Status st = writeAll(fd, value, tmp, op, key);
    if (::close(fd) != 0 && st.isOk()) st = ioError(op, key, "close", tmp, errno);
    std::string path = pathOf(key);
    if (st.isOk() && ::rename(tmp.c_str(), path.c_str()) != 0) {
      st = ioError(op, key, "rename to '" + path + "'", tmp, errno);
    }
    if (!st.isOk()) ::unlink(tmp.c_str());
    return st;
  }

  Status writeAll(int fd, std::string_view value, const std::string& tmp, std::string_view op,
                  std::string_view key) const {
    size_t done = 0;
    while (done < value.size()) {
      ssize_t n = ::write(fd, value.data() + done, value.size() - done);
      if (n < 0) {
        if (errno == EINTR) continue;
        return ioError(op, key, "write", tmp, errno);
      }
      done += static_cast<size_t>(n);
    }
    return Status::ok();
  }

  Status waitFor(const std::vector<std::string>& keys, Deadline deadline, std::string_view op) {
    auto start = Deadline::Clock::now();
    auto sleep = std::chrono::duration_cast<std::chrono::nanoseconds>(kMinPoll);
    std::vector<std::string> missing = keys;
    while (true) {
      // Keys seen once are not checked again, so a wait on many keys costs one stat per
      // key that is still missing.
      std::vector<std::string> still;
      for (auto& k : missing) {
        WEFT_ASSIGN_OR_RETURN(bool present, check(k));
        if (!present) still.push_back(std::move(k));
      }
      missing = std::move(still);
      if (missing.empty()) return Status::ok();
      if (deadline.expired()) {
        return timeoutError(describe(), op, missing, Deadline::Clock::now() - start);
      }
      std::this_thread::sleep_for(std::min(sleep, deadline.remaining()));
      sleep = std::min<std::chrono::nanoseconds>(sleep * 2, kMaxPoll);
    }
  }

  const std::string dir_;
};

}  // namespace

Result<std::shared_ptr<Store>> makeFileStore(const std::string& dir) {
  if (dir.empty()) {
    return WEFT_ERROR(StatusCode::kInvalidArgument,
                      "makeFileStore: empty directory (expected file:/path/to/dir)");
  }
  auto store = std::make_shared<FileStore>(dir);
  WEFT_RETURN_IF_ERROR(store->init());
  return std::shared_ptr<Store>(std::move(store));
}

}  // namespace weft
