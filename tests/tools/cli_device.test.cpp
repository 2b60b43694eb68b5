// --device and `device:` as a user meets them: an unknown device is refused by name, and a GPU that
// cannot be used (no CUDA backend in this build, no driver, no such device) stops the command at
// start-up with an error naming the device, before any model is served.
#include <gtest/gtest.h>

#include <filesystem>

#include "runtime/config/serve_config.hpp"
#include "runtime/model/model_runner.hpp"
#include "tests/tools/run_process.hpp"

namespace troupe::test {
namespace {

const std::string stories = std::string(TROUPE_SHARED_DIR) + "/models/stories260K/stories260K.gguf";

TEST(CliDevice, AnUnknownDeviceIsRefusedByName) {
  for (const std::string cmd : {"generate --max-tokens 2", "bench-engine --gen-tokens 2 --no-bandwidth"}) {
    const auto r = run(troupe_bin() + " " + cmd + " --model " + sh_quote(stories) + " --device tpu");
    EXPECT_EQ(r.exit_code, 1) << cmd;
    EXPECT_NE(r.err.find("unknown device 'tpu'"), std::string::npos) << cmd << ": " << r.err;
    EXPECT_TRUE(r.out.empty()) << cmd;
  }
}

TEST(CliDevice, GenerateOnAGpuThatCannotBeUsedFailsAtStartUpNamingIt) {
  const device_spec gpu{device_spec::kind_t::cuda, 0};
  if (check_device(gpu)) GTEST_SKIP() << "cuda:0 is usable here";
  const auto r = run(troupe_bin() + " generate --model " + sh_quote(stories) + " --device cuda:0 --max-tokens 4");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(r.out.empty());
  EXPECT_NE(r.err.find("unavailable: cuda:0: "), std::string::npos) << r.err;
  // Why: this build has no CUDA backend, or the CUDA runtime's own error.
  EXPECT_NE(r.err.find(cuda_backend_built() ? "CUDA device" : "no CUDA backend"), std::string::npos) << r.err;
}

TEST(CliDevice, ServeRefusesADeviceItDoesNotHave) {
  // No machine has a 100th GPU, so this fails with or without CUDA, before the server listens.
  const auto r = run(troupe_bin() + " serve --model " + sh_quote(stories) + " --port 0 --device cuda:99");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("cuda:99"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("listening"), std::string::npos) << r.err;
}

TEST(CliDevice, TheServeConfigChecksTheDeviceKey) {
  const std::string head = "models:\n  - name: m\n    path: /m.gguf\n    device: ";
  auto ok = parse_serve_config(head + "cuda:1\n", "test.yaml", "/");
  ASSERT_TRUE(ok) << ok.error().what();
  EXPECT_EQ(ok->models[0].device, "cuda:1");
  auto dflt = parse_serve_config("models:\n  - name: m\n    path: /m.gguf\n", "test.yaml", "/");
  ASSERT_TRUE(dflt);
  EXPECT_EQ(dflt->models[0].device, "cpu");
  auto bad = parse_serve_config(head + "gpu0\n", "test.yaml", "/");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message().find("models[0].device"), std::string::npos) << bad.error().what();
  EXPECT_NE(bad.error().message().find("'gpu0'"), std::string::npos) << bad.error().what();
}

}  // namespace
}  // namespace troupe::test
