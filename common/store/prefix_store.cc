// PrefixStore: namespaces another store by prepending "<prefix>/" to every key.
#include "common/store/store.h"

namespace weft {
namespace {

class PrefixStore final : public Store {
 public:
  PrefixStore(std::string prefix, std::shared_ptr<Store> base)
      : prefix_(std::move(prefix)), base_(std::move(base)) {}

  Status set(std::string_view key, std::string_view value) override {
    return named(base_->set(full(key), value));
  }
  Result<std::string> get(std::string_view key, Deadline deadline) override {
    return named(base_->get(full(key), deadline));
  }
  Status wait(const std::vector<std::string>& keys, Deadline deadline) override {
    std::vector<std::string> full_keys;
    full_keys.reserve(keys.size());
    for (const auto& k : keys) full_keys.push_back(full(k));
    return named(base_->wait(full_keys, deadline));
  }
  Result<int64_t> add(std::string_view key, int64_t delta) override {
    return named(base_->add(full(key), delta));
  }
  Result<std::string> compareSet(std::string_view key, std::string_view expected,
                                 std::string_view desired) override {
    return named(base_->compareSet(full(key), expected, desired));
  }
  Result<bool> erase(std::string_view key) override { return named(base_->erase(full(key))); }
  Result<bool> check(std::string_view key) override { return named(base_->check(full(key))); }
  std::string describe() const override {
    return strCat("prefix/", prefix_, "/", base_->describe());
  }

 private:
  std::string full(std::string_view key) const { return strCat(prefix_, "/", key); }

  // Errors name this store too: "prefix/<p>/<base>: <base's message>".
  Status named(Status st) const { return st.isOk() ? st : st.withContext(describe()); }
  template <typename T>
  Result<T> named(Result<T> r) const {
    if (r.isOk()) return r;
    return named(r.status());
  }

  const std::string prefix_;
  const std::shared_ptr<Store> base_;
};

}  // namespace

std::shared_ptr<Store> makePrefixStore(std::string prefix, std::shared_ptr<Store> base) {
  return std::make_shared<PrefixStore>(std::move(prefix), std::move(base));
}

}  // namespace weft
