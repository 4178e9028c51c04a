// Config registry, Status/Result and Deadline.
#include <gtest/gtest.h>
#include <unistd.h>

#include <thread>

#include "common/config.h"
#include "common/deadline.h"
#include "common/logging.h"
#include "common/result.h"
#include "tests/support/test_env.h"

namespace weft {
namespace {

using testing::ScopedEnv;

TEST(Status, OkIsCheapAndPrintsOk) {
  Status s;
  EXPECT_TRUE(s.isOk());
  EXPECT_EQ(s.code(), StatusCode::kOk);
  EXPECT_EQ(s.toString(), "OK");
  EXPECT_EQ(s.message(), "");
}

TEST(Status, ErrorCarriesCodeMessageOriginContextAndHint) {
  Status s = WEFT_ERROR(StatusCode::kTimeout, "store get of key ", "x", " after ", 3, " s");
  EXPECT_FALSE(s.isOk());
  EXPECT_EQ(s.code(), StatusCode::kTimeout);
  EXPECT_EQ(s.message(), "store get of key x after 3 s");
  EXPECT_NE(s.origin().find("config_test.cc:"), std::string::npos);
  Status c = s.withContext("rank 1").withHint("is rank 0 alive?");
  EXPECT_EQ(c.code(), StatusCode::kTimeout);
  EXPECT_EQ(c.message(), "rank 1: store get of key x after 3 s (hint: is rank 0 alive?)");
  EXPECT_NE(c.toString().find("kTimeout: rank 1"), std::string::npos);
}

Result<int> half(int x) {
  if (x % 2) return WEFT_ERROR(StatusCode::kInvalidArgument, x, " is odd");
  return x / 2;
}

Result<int> quarter(int x) {
  WEFT_ASSIGN_OR_RETURN(int h, half(x));
  return half(h);
}

TEST(Result, PropagatesValuesAndErrors) {
  EXPECT_EQ(*quarter(8), 2);
  auto r = quarter(6);
  ASSERT_FALSE(r.isOk());
  EXPECT_EQ(r.status().message(), "3 is odd");
  EXPECT_EQ(r.valueOr(-1), -1);
  Result<int> bad{Status()};  // an OK status without value is a bug, reported as such
  EXPECT_EQ(bad.status().code(), StatusCode::kInternal);
}

TEST(Deadline, NeverAndExpiry) {
  EXPECT_TRUE(Deadline::never().isNever());
  EXPECT_FALSE(Deadline::never().expired());
  EXPECT_EQ(Deadline::never().pollTimeoutMs(), -1);
  Deadline d = Deadline::after(std::chrono::milliseconds(20));
  EXPECT_FALSE(d.isNever());
  EXPECT_LE(d.pollTimeoutMs(), 20);
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  EXPECT_TRUE(d.expired());
  EXPECT_EQ(d.pollTimeoutMs(), 0);
  EXPECT_EQ(d.remaining().count(), 0);
  EXPECT_TRUE(Deadline::afterSeconds(1e12).isNever());
  EXPECT_EQ(Deadline::never().min(d).when(), d.when());
  EXPECT_EQ(formatDuration(std::chrono::milliseconds(1500)), "1.50 s");
}

TEST(Config, EveryDeclaredDefaultIsValid) {
  for (const auto& p : config::allParams()) {
    EXPECT_TRUE(config::validate(p, p.default_value).isOk()) << p.name;
    EXPECT_EQ(config::findParam(p.name), &p);
    EXPECT_NE(std::string(p.doc), "") << p.name;
  }
}

TEST(Config, DefaultsEnvironmentAndOverrides) {
  ScopedEnv e("WEFT_TIMEOUT", std::nullopt);
  auto d = config::raw("WEFT_TIMEOUT");
  ASSERT_TRUE(d.isOk());
  EXPECT_EQ(d->source, config::Source::kDefault);
  EXPECT_DOUBLE_EQ(*config::getDouble("WEFT_TIMEOUT"), 300.0);
  {
    ScopedEnv e2("WEFT_TIMEOUT", "2.5");
    EXPECT_DOUBLE_EQ(*config::getDouble("WEFT_TIMEOUT"), 2.5);
    EXPECT_EQ(config::raw("WEFT_TIMEOUT")->source, config::Source::kEnvironment);
    config::setOverride("WEFT_TIMEOUT", "7");
    EXPECT_DOUBLE_EQ(*config::getDouble("WEFT_TIMEOUT"), 7.0);
    EXPECT_EQ(config::raw("WEFT_TIMEOUT")->source, config::Source::kOverride);
    config::clearOverride("WEFT_TIMEOUT");
    EXPECT_DOUBLE_EQ(*config::getDouble("WEFT_TIMEOUT"), 2.5);
  }
}

TEST(Config, MalformedValuesNameVariableValueAndRange) {
  {
    ScopedEnv e("WEFT_TIMEOUT", "-3");
    auto r = config::getDouble("WEFT_TIMEOUT");
    ASSERT_FALSE(r.isOk());
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    const std::string& m = r.status().message();
    EXPECT_NE(m.find("WEFT_TIMEOUT=\"-3\""), std::string::npos) << m;
    EXPECT_NE(m.find("out of range"), std::string::npos) << m;
    EXPECT_NE(m.find("a number in [0.001, 604800]"), std::string::npos) << m;
    EXPECT_FALSE(config::checkEnvironment().isOk());
  }
  {
    ScopedEnv e("WEFT_LOG", "loud");
    auto r = config::getString("WEFT_LOG");
    ASSERT_FALSE(r.isOk());
    EXPECT_NE(r.status().message().find("WEFT_LOG=\"loud\""), std::string::npos);
    EXPECT_NE(r.status().message().find("one of error|warn|info|debug|trace"),
              std::string::npos);
  }
  {
    ScopedEnv e("WEFT_RANK", "3x");
    auto r = config::getInt("WEFT_RANK");
    ASSERT_FALSE(r.isOk());
    EXPECT_NE(r.status().message().find("not an integer"), std::string::npos);
  }
  {
    ScopedEnv e("WEFT_TEST_STRICT", "maybe");
    EXPECT_FALSE(config::getBool("WEFT_TEST_STRICT").isOk());
  }
  {
    ScopedEnv e("WEFT_LOG_SUBSYS", "store,bogus");
    auto r = config::getList("WEFT_LOG_SUBSYS");
    ASSERT_FALSE(r.isOk());
    EXPECT_NE(r.status().message().find("\"bogus\" is not a known item"), std::string::npos);
  }
}

TEST(Config, TypedParsing) {
  ScopedEnv a("WEFT_TEST_STRICT", "Yes");
  EXPECT_TRUE(*config::getBool("WEFT_TEST_STRICT"));
  ScopedEnv b("WEFT_LOG", " DEBUG ");
  EXPECT_EQ(*config::getString("WEFT_LOG"), "debug");
  ScopedEnv c("WEFT_LOG_SUBSYS", "Store, boot");
  auto l = config::getList("WEFT_LOG_SUBSYS");
  ASSERT_TRUE(l.isOk());
  EXPECT_EQ(*l, (std::vector<std::string>{"store", "boot"}));
  ScopedEnv d("WEFT_RANK", "0x10");
  EXPECT_EQ(*config::getInt("WEFT_RANK"), 16);
  ScopedEnv e("WEFT_RANK", "010");  // decimal, not octal
  EXPECT_EQ(*config::getInt("WEFT_RANK"), 10);
  ScopedEnv f("WEFT_PS_SERVER_THREADS", "08");
  EXPECT_EQ(*config::getInt("WEFT_PS_SERVER_THREADS"), 8);
}

TEST(Config, UnknownVariablesWarnButDoNotFail) {
  ScopedEnv e("WEFT_TIMEOUTT", "5");
  EXPECT_TRUE(config::checkEnvironment().isOk());
  EXPECT_EQ(config::findParam("WEFT_TIMEOUTT"), nullptr);
  EXPECT_FALSE(config::getInt("WEFT_NOT_DECLARED").isOk());
}

TEST(Logging, LevelAndSubsystemFilter) {
  ScopedEnv a("WEFT_LOG", "info");
  ScopedEnv b("WEFT_LOG_SUBSYS", "store");
  log::reload();
  EXPECT_TRUE(log::enabled(log::Level::kInfo, "store"));
  EXPECT_FALSE(log::enabled(log::Level::kInfo, "coll"));
  EXPECT_FALSE(log::enabled(log::Level::kDebug, "store"));
  EXPECT_TRUE(log::enabled(log::Level::kError, "coll"));
  ::testing::internal::CaptureStderr();
  WEFT_LOG(kInfo, "store") << "hello " << 42;
  WEFT_LOG(kInfo, "coll") << "filtered";
  std::string out = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(out.find("[store] INFO hello 42\n"), std::string::npos) << out;
  EXPECT_NE(out.find(":" + std::to_string(getpid()) + " rank "), std::string::npos) << out;
  EXPECT_EQ(out.find("filtered"), std::string::npos);
  unsetenv("WEFT_LOG");
  unsetenv("WEFT_LOG_SUBSYS");
  log::reload();
}

}  // namespace
}  // namespace weft
