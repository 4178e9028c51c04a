// HashStore: an in-process Store (mutex + condition variable).
#include <condition_variable>
#include <map>
#include <mutex>

#include "common/store/store.h"
#include "common/store/store_util.h"

namespace weft {
namespace {

using store_internal::addCounter;
using store_internal::parseCounter;
using store_internal::timeoutError;

class HashStore final : public Store {
 public:
  Status set(std::string_view key, std::string_view value) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      data_[std::string(key)] = std::string(value);
    }
    cv_.notify_all();
    return Status::ok();
  }

  Result<std::string> get(std::string_view key, Deadline deadline) override {
    std::vector<std::string> keys{std::string(key)};
    std::unique_lock<std::mutex> lock(mu_);
    WEFT_RETURN_IF_ERROR(waitLocked(lock, keys, deadline, "get"));
    return data_.find(keys[0])->second;
  }

  Status wait(const std::vector<std::string>& keys, Deadline deadline) override {
    std::unique_lock<std::mutex> lock(mu_);
    return waitLocked(lock, keys, deadline, "wait");
  }

  Result<int64_t> add(std::string_view key, int64_t delta) override {
    int64_t sum = 0;
    {
      std::lock_guard<std::mutex> lock(mu_);
      std::string& slot = data_[std::string(key)];
      WEFT_ASSIGN_OR_RETURN(int64_t current, parseCounter(slot, key, describe()));
      WEFT_ASSIGN_OR_RETURN(sum, addCounter(current, delta, key, describe()));
      slot = std::to_string(sum);
    }
    cv_.notify_all();
    return sum;
  }

  Result<std::string> compareSet(std::string_view key, std::string_view expected,
                                 std::string_view desired) override {
    std::string result;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = data_.find(std::string(key));
      std::string_view current = it == data_.end() ? std::string_view() : it->second;
      if (current != expected) return std::string(current);
      data_[std::string(key)] = std::string(desired);
      result = std::string(desired);
    }
    cv_.notify_all();
    return result;
  }

  Result<bool> erase(std::string_view key) override {
    std::lock_guard<std::mutex> lock(mu_);
    return data_.erase(std::string(key)) > 0;
  }

  Result<bool> check(std::string_view key) override {
    std::lock_guard<std::mutex> lock(mu_);
    return data_.count(std::string(key)) > 0;
  }

  std::string describe() const override { return "hash"; }

 private:
  std::vector<std::string> missingLocked(const std::vector<std::string>& keys) const {
    std::vector<std::string> missing;
    for (const auto& k : keys) {
      if (data_.count(k) == 0) missing.push_back(k);
    }
    return missing;
  }

  Status waitLocked(std::unique_lock<std::mutex>& lock, const std::vector<std::string>& keys,
                    Deadline deadline, std::string_view op) {
    auto start = Deadline::Clock::now();
    while (true) {
      std::vector<std::string> missing = missingLocked(keys);
      if (missing.empty()) return Status::ok();
      if (deadline.expired()) {
        return timeoutError(describe(), op, missing, Deadline::Clock::now() - start);
      }
      if (deadline.isNever()) {
        cv_.wait(lock);
      } else {
        cv_.wait_until(lock, deadline.when());
      }
    }
  }

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, std::string, std::less<>> data_;
};

}  // namespace

std::shared_ptr<Store> makeHashStore() { return std::make_shared<HashStore>(); }

}  // namespace weft
