// Helpers shared by the parameter-server unit tests (ps_*_test.cc).
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "paramserver/server/table.h"
#include "paramserver/table_spec.h"
#include "paramserver/wire/packed_span.h"

namespace weft::ps::testing {

inline TableSpec makeSpec(uint32_t id, std::string name, uint32_t dim,
                          OptimizerKind kind = OptimizerKind::kSgd) {
  TableSpec s;
  s.id = id;
  s.name = std::move(name);
  s.dim = dim;
  s.optimizer.kind = kind;
  return s;
}

inline std::unique_ptr<Table> makeTable(const TableSpec& spec, TableOptions options = {}) {
  auto t = Table::create(spec, options);
  if (!t.isOk()) throw std::runtime_error(t.status().toString());
  return std::move(t).value();
}

inline std::vector<float> pullRows(Table& t, const std::vector<uint64_t>& keys) {
  std::vector<float> out(keys.size() * t.dim(), -12345.0f);
  t.pull(KeySpan::of(keys), out.data());
  return out;
}

inline Status pushRows(Table& t, const std::vector<uint64_t>& keys,
                       const std::vector<float>& grads) {
  return t.push(KeySpan::of(keys), FloatSpan::of(grads));
}

// A fresh directory under the temp dir, removed at scope exit.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "weft-ps-XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace weft::ps::testing
