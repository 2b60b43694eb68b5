// `troupe pull` against a local server in the Hugging Face hub's URL layout (loopback only): a whole
// file, a resumed download, a model directory, the no-network error, and a pulled model that serves.
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>

#include "runtime/http/http_server.hpp"
#include "tests/tools/run_process.hpp"
#include "tests/tools/server_process.hpp"

namespace troupe::test {
namespace {

const std::string shared_dir = TROUPE_SHARED_DIR;
const std::string stories = shared_dir + "/models/stories260K";

/// Serves BASE/REPO/resolve/main/FILE from a map of repo paths to local files, with Range support.
class fake_hub {
 public:
  explicit fake_hub(std::map<std::string, std::string> files) : files_(std::move(files)) {
    auto s = http_server::start(http_server_options{}, [this](const http_request& req, std::shared_ptr<response_writer> w) {
      ++requests_;
      auto it = files_.find(std::string(req.path()));
      if (it == files_.end()) return w->send(http_response{404, "not found", "text/plain", {}});
      const std::string body = slurp(it->second);
      const std::string range(req.header("Range"));
      if (range.rfind("bytes=", 0) == 0) {
        const size_t from = std::stoull(range.substr(6));
        {
          std::lock_guard lock(mu_);
          ranges_.push_back(from);
        }
        http_response r{206, body.substr(from), "application/octet-stream", {}};
        r.headers.push_back({"Content-Range", "bytes " + std::to_string(from) + "-" + std::to_string(body.size() - 1) + "/" +
                                                  std::to_string(body.size())});
        return w->send(std::move(r));
      }
      w->send(http_response{200, body, "application/octet-stream", {}});
    });
    EXPECT_TRUE(s);
    server_ = std::move(*s);
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(server_->port()); }
  int requests() const { return requests_; }
  std::vector<size_t> ranges() {
    std::lock_guard lock(mu_);
    return ranges_;
  }

 private:
  std::map<std::string, std::string> files_;
  std::unique_ptr<http_server> server_;
  std::atomic<int> requests_{0};
  std::mutex mu_;
  std::vector<size_t> ranges_;
};

class CliPull : public ::testing::Test {
 protected:
  void SetUp() override {
    cache_ = std::filesystem::temp_directory_path() / ("troupe_pull_" + std::to_string(::getpid()));
    std::filesystem::create_directories(cache_);
  }
  void TearDown() override { std::filesystem::remove_all(cache_); }
  std::string pull(const fake_hub& hub, const std::string& spec) {
    last_ = run(troupe_bin() + " pull " + spec + " --base-url " + hub.url() + " --cache " + cache_.string());
    return last_.out;
  }
  std::filesystem::path cache_;
  process_result last_;
};

TEST_F(CliPull, DownloadsAFileAndResumesAnInterruptedOne) {
  fake_hub hub({{"/tiny/stories/resolve/main/stories260K.gguf", stories + "/stories260K.gguf"}});
  const std::string original = slurp(stories + "/stories260K.gguf");
  const auto dest = cache_ / "tiny/stories/stories260K.gguf";

  // A download cut off half-way left a .partial file: pull asks only for the rest.
  std::filesystem::create_directories(dest.parent_path());
  std::ofstream(dest.string() + ".partial", std::ios::binary).write(original.data(), static_cast<std::streamsize>(original.size() / 2));
  EXPECT_EQ(pull(hub, "tiny/stories/stories260K.gguf"), dest.string() + "\n") << last_.err;
  ASSERT_EQ(last_.exit_code, 0) << last_.err;
  EXPECT_EQ(slurp(dest), original);
  EXPECT_EQ(hub.ranges(), std::vector<size_t>{original.size() / 2});
  EXPECT_FALSE(std::filesystem::exists(dest.string() + ".partial"));

  // Complete files are not fetched again.
  const int before = hub.requests();
  pull(hub, "tiny/stories/stories260K.gguf");
  EXPECT_EQ(last_.exit_code, 0);
  EXPECT_EQ(hub.requests(), before);
}

TEST_F(CliPull, DownloadsAHuggingFaceDirectoryThatThenLoads) {
  fake_hub hub({{"/tiny/stories-hf/resolve/main/config.json", stories + "/hf/config.json"},
                {"/tiny/stories-hf/resolve/main/model.safetensors", stories + "/hf/model.safetensors"},
                {"/tiny/stories-hf/resolve/main/tokenizer.model", stories + "/hf/tokenizer.model"}});
  std::string dir = pull(hub, "tiny/stories-hf");
  ASSERT_EQ(last_.exit_code, 0) << last_.err;
  ASSERT_FALSE(dir.empty());
  dir.pop_back();  // the printed path ends with a newline
  EXPECT_EQ(dir, (cache_ / "tiny/stories-hf").string());
  const auto r = run(troupe_bin() + " inspect --json --model " + dir);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out).at("dim"), 64);
}

TEST_F(CliPull, MissingFilesAndNoNetworkAreClearErrors) {
  fake_hub hub({});
  pull(hub, "tiny/none/model.gguf");
  EXPECT_EQ(last_.exit_code, 1);
  EXPECT_NE(last_.err.find("not found (404)"), std::string::npos) << last_.err;
  last_ = run(troupe_bin() + " pull tiny/none/model.gguf --base-url http://127.0.0.1:1 --cache " + cache_.string());
  EXPECT_EQ(last_.exit_code, 1);
  EXPECT_NE(last_.err.find("cannot reach"), std::string::npos) << last_.err;
  EXPECT_NE(last_.err.find("No network here?"), std::string::npos) << last_.err;
}

TEST_F(CliPull, AnHfModelPathIsPulledOnDemandAndGenerates) {
  fake_hub hub({{"/tiny/stories/resolve/main/stories260K.gguf", stories + "/stories260K.gguf"}});
  const std::string env = "TROUPE_HUB_URL=" + hub.url() + " TROUPE_CACHE=" + cache_.string() + " ";
  const auto r = run(env + troupe_bin() + " generate --model hf:tiny/stories/stories260K.gguf --temperature 0 --max-tokens 16 --prompt 'Once upon a time'");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, ", there was a little girl named Lily. She loved to play");  // the first 16 reference tokens
  EXPECT_TRUE(std::filesystem::exists(cache_ / "tiny/stories/stories260K.gguf"));
}

// With no model given, found nowhere local, `troupe serve` downloads stories260K from the hub into
// the cache and serves it; with no network it stops with an error that says what to do.
TEST_F(CliPull, TheDefaultModelIsDownloadedWhenNoCopyIsFound) {
  fake_hub hub({{"/ggml-org/models-moved/resolve/main/tinyllamas/stories260K.gguf", stories + "/stories260K.gguf"}});
  const std::filesystem::path cwd = cache_ / "work";  // no ../shared beside it
  std::filesystem::create_directories(cwd);
  process_env where{cwd.string(), {"TROUPE_MODEL=", "HOME=" + cache_.string(), "TROUPE_CACHE=" + (cache_ / "models").string()}};
  where.vars.push_back("TROUPE_HUB_URL=http://127.0.0.1:1");
  server_process offline({"--threads", "1"}, std::chrono::seconds(30), where);
  EXPECT_EQ(offline.port(), 0);
  EXPECT_NE(offline.log().find("No network here?"), std::string::npos) << offline.log();

  where.vars.back() = "TROUPE_HUB_URL=" + hub.url();
  server_process server({"--threads", "1"}, std::chrono::seconds(30), where);
  ASSERT_NE(server.port(), 0) << server.log();
  EXPECT_TRUE(std::filesystem::exists(cache_ / "models/ggml-org/models-moved/tinyllamas/stories260K.gguf"));
  const auto r = run("curl -sS " + server.url("/v1/completions") + " -H 'Content-Type: application/json' -d " +
                     sh_quote(R"({"model":"stories260K","prompt":"Once upon a time","max_tokens":16,"temperature":0})"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto reply = nlohmann::json::parse(r.out);
  EXPECT_EQ(reply["choices"][0]["text"], ", there was a little girl named Lily. She loved to play");
  EXPECT_EQ(server.stop(), 0);

  // Downloaded once: it now starts from the cache with no network.
  where.vars.back() = "TROUPE_HUB_URL=http://127.0.0.1:1";
  server_process cached({"--threads", "1"}, std::chrono::seconds(30), where);
  EXPECT_NE(cached.port(), 0) << cached.log();
}

}  // namespace
}  // namespace troupe::test
