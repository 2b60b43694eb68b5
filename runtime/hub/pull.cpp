#include "runtime/hub/pull.hpp"

#include <curl/curl.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <set>

namespace troupe {
namespace {

namespace fs = std::filesystem;

std::string base_url_of(const pull_options& o) {
  if (!o.base_url.empty()) return o.base_url;
  if (const char* e = std::getenv("TROUPE_HUB_URL"); e && *e) return e;
  return "https://huggingface.co";
}

struct download_state {
  std::FILE* out = nullptr;
  int64_t received = 0;       ///< bytes written in this transfer
  int64_t start = 0;          ///< bytes already on disk before it
  bool progress = false;
  std::string name;
  std::chrono::steady_clock::time_point t0 = std::chrono::steady_clock::now();
  std::chrono::steady_clock::time_point last_draw;
};

size_t on_body(char* data, size_t size, size_t n, void* user) {
  auto* st = static_cast<download_state*>(user);
  const size_t bytes = size * n;
  if (std::fwrite(data, 1, bytes, st->out) != bytes) return 0;  // disk full: abort the transfer
  st->received += static_cast<int64_t>(bytes);
  return bytes;
}

int on_progress(void* user, curl_off_t total, curl_off_t now, curl_off_t, curl_off_t) {
  auto* st = static_cast<download_state*>(user);
  if (!st->progress) return 0;
  const auto t = std::chrono::steady_clock::now();
  if (t - st->last_draw < std::chrono::milliseconds(200) && (total == 0 || now < total)) return 0;
  st->last_draw = t;
  const double secs = std::chrono::duration<double>(t - st->t0).count();
  const double all = static_cast<double>(st->start + total), done = static_cast<double>(st->start + now);
  const int width = 30, filled = all > 0 ? static_cast<int>(width * done / all) : 0;
  std::fprintf(stderr, "\r%-32.32s [%.*s%*s] %6.1f / %.1f MiB  %.1f MiB/s", st->name.c_str(), filled,
               "##############################", width - filled, "", done / (1 << 20), all / (1 << 20),
               secs > 0 ? static_cast<double>(now) / (1 << 20) / secs : 0.0);
  return 0;
}

void curl_global() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

/// Downloads url to dest (through dest.partial). not_found for HTTP 404.
status download(const std::string& url, const fs::path& dest, bool progress) {
  curl_global();
  const fs::path partial = dest.string() + ".partial";
  std::error_code ec;
  fs::create_directories(dest.parent_path(), ec);
  download_state st;
  st.progress = progress;
  st.name = dest.filename().string();
  st.start = fs::exists(partial) ? static_cast<int64_t>(fs::file_size(partial)) : 0;
  st.out = std::fopen(partial.c_str(), st.start > 0 ? "ab" : "wb");
  if (!st.out) return make_error(errc::io_error, "cannot write '" + partial.string() + "'");
  CURL* c = curl_easy_init();
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(c, CURLOPT_FAILONERROR, 0L);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &st);
  curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
  curl_easy_setopt(c, CURLOPT_XFERINFODATA, &st);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 15L);
  curl_easy_setopt(c, CURLOPT_USERAGENT, "troupe/0.1");
  struct curl_slist* headers = nullptr;
  if (const char* tok = std::getenv("HF_TOKEN"); tok && *tok)
    headers = curl_slist_append(headers, (std::string("Authorization: Bearer ") + tok).c_str());
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
  if (st.start > 0) curl_easy_setopt(c, CURLOPT_RESUME_FROM_LARGE, static_cast<curl_off_t>(st.start));
  const CURLcode rc = curl_easy_perform(c);
  long http = 0;
  curl_off_t announced = -1;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &http);
  curl_easy_getinfo(c, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &announced);
  curl_easy_cleanup(c);
  curl_slist_free_all(headers);
  std::fclose(st.out);
  if (progress) std::fputc('\n', stderr);
  if (rc == CURLE_COULDNT_RESOLVE_HOST || rc == CURLE_COULDNT_CONNECT || rc == CURLE_OPERATION_TIMEDOUT)
    return make_error(errc::unavailable, "cannot reach " + url + " (" + curl_easy_strerror(rc) +
                                             "). No network here? Copy the model into the cache (" + dest.parent_path().string() +
                                             "), pass a local --model PATH, or point --base-url / $TROUPE_HUB_URL at a mirror");
  if (rc != CURLE_OK && rc != CURLE_PARTIAL_FILE)
    return make_error(errc::io_error, "downloading " + url + ": " + curl_easy_strerror(rc) +
                                          " (the partial file is kept; run pull again to resume)");
  if (http == 404) {
    fs::remove(partial, ec);
    return make_error(errc::not_found, url + ": not found (404)");
  }
  if (http == 200 && st.start > 0) {
    // The server ignored the Range request and sent the whole file after what we had: start over.
    fs::remove(partial, ec);
    return download(url, dest, progress);
  }
  if (http != 200 && http != 206)
    return make_error(errc::io_error, url + ": HTTP " + std::to_string(http) + " (the partial file is kept)");
  const int64_t expected_total = announced >= 0 ? st.start + static_cast<int64_t>(announced) : -1;
  const int64_t have = static_cast<int64_t>(fs::file_size(partial));
  if (rc == CURLE_PARTIAL_FILE || (expected_total >= 0 && have != expected_total))
    return make_error(errc::truncated, url + ": received " + std::to_string(have) + " of " + std::to_string(expected_total) +
                                           " bytes (the partial file is kept; run pull again to resume)");
  fs::rename(partial, dest, ec);
  if (ec) return make_error(errc::io_error, "cannot move the download to '" + dest.string() + "': " + ec.message());
  return {};
}

}  // namespace

fs::path model_cache_dir(const pull_options& o) {
  if (!o.cache_dir.empty()) return o.cache_dir;
  if (const char* e = std::getenv("TROUPE_CACHE"); e && *e) return e;
  const char* home = std::getenv("HOME");
  return fs::path(home && *home ? home : ".") / ".cache/troupe/models";
}

expected<fs::path> pull_model(const std::string& spec, const pull_options& opts) {
  // owner/name[/path/in/repo]
  const size_t first = spec.find('/');
  if (spec.empty() || first == std::string::npos || first == 0 || spec.find("..") != std::string::npos)
    return make_error(errc::invalid_argument, "pull: expected REPO or REPO/FILE with REPO = owner/name, got '" + spec + "'");
  const size_t second = spec.find('/', first + 1);
  const std::string repo = spec.substr(0, second), file = second == std::string::npos ? "" : spec.substr(second + 1);
  const fs::path dir = model_cache_dir(opts) / repo;
  const std::string base = base_url_of(opts) + "/" + repo + "/resolve/main/";
  auto fetch = [&](const std::string& f) -> status {
    const fs::path dest = dir / f;
    if (fs::exists(dest)) return {};
    return download(base + f, dest, opts.progress);
  };
  if (!file.empty()) {
    TROUPE_TRY(fetch(file));
    return dir / file;
  }
  // A Hugging Face model directory: config.json, weights (sharded through the index, or one file),
  // and whichever tokenizer files exist.
  TROUPE_TRY(fetch("config.json"));
  if (auto idx = fetch("model.safetensors.index.json"); idx) {
    std::ifstream in(dir / "model.safetensors.index.json");
    const auto j = nlohmann::json::parse(in, nullptr, false);
    if (!j.is_object() || !j.contains("weight_map"))
      return make_error(errc::bad_format, "model.safetensors.index.json of " + repo + " has no weight_map");
    std::set<std::string> shards;
    for (const auto& [name, shard] : j["weight_map"].items()) shards.insert(shard.get<std::string>());
    for (const auto& s : shards) TROUPE_TRY(fetch(s));
  } else if (idx.error().code() == errc::not_found) {
    TROUPE_TRY(fetch("model.safetensors"));
  } else {
    return unexpected{idx.error()};
  }
  bool have_tokenizer = false;
  for (const char* f : {"tokenizer.json", "tokenizer.model", "tokenizer_config.json", "generation_config.json"}) {
    auto r = fetch(f);
    if (!r && r.error().code() != errc::not_found) return unexpected{r.error()};
    if (r && std::string(f).rfind("tokenizer.", 0) == 0) have_tokenizer = true;
  }
  if (!have_tokenizer) return make_error(errc::not_found, repo + " has neither tokenizer.json nor tokenizer.model");
  return dir;
}

expected<std::string> resolve_model_path(const std::string& spec, const pull_options& opts) {
  if (spec.rfind("hf:", 0) != 0) return spec;
  auto p = pull_model(spec.substr(3), opts);
  TROUPE_TRY(p);
  return p->string();
}

}  // namespace troupe
