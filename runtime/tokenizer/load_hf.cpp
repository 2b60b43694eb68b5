// A Hugging Face tokenizer.json (byte-level BPE) plus the files beside it that say which tokens are
// BOS/EOS and hold the chat template (tokenizer_config.json, config.json, generation_config.json).

#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "runtime/tokenizer/bpe.hpp"
#include "runtime/tokenizer/loaders.hpp"

namespace troupe {

namespace {

using json = nlohmann::json;

expected<json> read_json(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::error_code ec;
    const bool exists = std::filesystem::exists(path, ec);
    return make_error(exists ? errc::io_error : errc::not_found, "cannot open '" + path.string() + "'");
  }
  std::stringstream ss;
  ss << in.rdbuf();
  json j = json::parse(ss.str(), nullptr, false);
  if (j.is_discarded()) return make_error(errc::bad_format, path.string() + ": not valid JSON");
  return j;
}

// Optional sidecar JSON: a missing or broken one is just absent.
json read_sidecar(const std::filesystem::path& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) return json();
  auto j = read_json(path);
  return j && j->is_object() ? std::move(*j) : json();
}

const std::string* str(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get_ptr<const std::string*>() : nullptr;
}

bool flag(const json& j, const char* key, bool fallback) {
  auto it = j.find(key);
  return it != j.end() && it->is_boolean() ? it->get<bool>() : fallback;
}

// tokenizer_config.json's bos_token / eos_token: a string or {"content": ...}.
std::string token_text(const json& cfg, const char* key) {
  auto it = cfg.find(key);
  if (it == cfg.end()) return {};
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object()) {
    if (const std::string* s = str(*it, "content")) return *s;
  }
  return {};
}

// Ids of a config.json-style key that holds an id or a list of ids.
std::vector<int32_t> ids_of(const json& cfg, const char* key) {
  std::vector<int32_t> out;
  auto it = cfg.find(key);
  if (it == cfg.end()) return out;
  if (it->is_number_integer()) out.push_back(it->get<int32_t>());
  if (it->is_array()) {
    for (const auto& e : *it) {
      if (e.is_number_integer()) out.push_back(e.get<int32_t>());
    }
  }
  return out;
}

// Adds the steps of one Hugging Face pre_tokenizer; notes whether a ByteLevel step was seen.
std::string add_pre_tokenizer(const json& p, pre_tokenizer& pre, bool& byte_level) {
  if (p.is_null()) return {};
  const std::string* type = str(p, "type");
  if (type == nullptr) return "pre_tokenizer without a type";
  if (*type == "Sequence") {
    auto it = p.find("pretokenizers");
    if (it == p.end() || !it->is_array()) return "Sequence pre_tokenizer without pretokenizers";
    for (const auto& e : *it) {
      if (std::string err = add_pre_tokenizer(e, pre, byte_level); !err.empty()) return err;
    }
    return {};
  }
  if (*type == "ByteLevel") {
    byte_level = true;
    if (flag(p, "add_prefix_space", true)) pre.add_prefix_space();
    if (flag(p, "use_regex", true)) pre.add_split(split_pattern::gpt2);
    return {};
  }
  if (*type == "Digits") {
    pre.add_digits(flag(p, "individual_digits", false));
    return {};
  }
  if (*type == "Split") {
    const json* pattern = p.contains("pattern") ? &p["pattern"] : nullptr;
    const std::string* regex = pattern && pattern->is_object() ? str(*pattern, "Regex") : nullptr;
    if (regex == nullptr) return "Split pre_tokenizer without a Regex pattern";
    const std::string* behavior = str(p, "behavior");
    if (behavior && *behavior != "Isolated") return "Split behavior '" + *behavior + "' (only Isolated is supported)";
    if (flag(p, "invert", false)) return "inverted Split pre_tokenizer";
    auto sp = split_pattern_from_regex(*regex);
    if (!sp) return "Split regex '" + *regex + "' (troupe implements the GPT-2, Llama-3 and Qwen2 patterns)";
    pre.add_split(*sp);
    return {};
  }
  return "pre_tokenizer type '" + *type + "'";
}

// The BOS a TemplateProcessing post-processor puts first, or -1.
int32_t template_bos(const json& post) {
  if (!post.is_object()) return -1;
  const std::string* type = str(post, "type");
  if (type && *type == "Sequence" && post.contains("processors") && post["processors"].is_array()) {
    for (const auto& p : post["processors"]) {
      if (int32_t id = template_bos(p); id >= 0) return id;
    }
    return -1;
  }
  if (!type || *type != "TemplateProcessing") return -1;
  auto single = post.find("single");
  if (single == post.end() || !single->is_array() || single->empty()) return -1;
  const json& first = (*single)[0];
  auto special = first.find("SpecialToken");
  if (special == first.end() || !special->is_object()) return -1;
  const std::string* name = str(*special, "id");
  auto tokens = post.find("special_tokens");
  if (name == nullptr || tokens == post.end() || !tokens->contains(*name)) return -1;
  const json& ids = (*tokens)[*name]["ids"];
  return ids.is_array() && !ids.empty() && ids[0].is_number_integer() ? ids[0].get<int32_t>() : -1;
}

expected<std::unique_ptr<tokenizer>> parse(const json& j, const std::filesystem::path& path) {
  const std::string where = path.string();
  auto bad = [&](const std::string& what) -> expected<std::unique_ptr<tokenizer>> {
    return make_error(errc::bad_format, where + ": " + what);
  };
  if (!j.is_object() || !j.contains("model") || !j["model"].is_object()) return bad("no \"model\" object");
  const json& model = j["model"];
  const std::string* type = str(model, "type");
  if (type != nullptr && *type != "BPE") return bad("model type '" + *type + "' is not supported (only BPE)");
  auto vocab_it = model.find("vocab");
  if (vocab_it == model.end() || !vocab_it->is_object()) return bad("model.vocab is not an object");
  auto merges_it = model.find("merges");
  if (merges_it == model.end() || !merges_it->is_array()) return bad("model.merges is not an array");

  bool byte_level = false;
  bpe_vocab v;
  if (std::string err = add_pre_tokenizer(j.value("pre_tokenizer", json()), v.pre, byte_level); !err.empty()) {
    return bad("unsupported " + err);
  }
  if (const auto d = j.find("decoder"); d != j.end() && d->is_object()) {
    if (const std::string* dt = str(*d, "type"); dt && *dt == "ByteLevel") byte_level = true;
  }
  if (!byte_level) {
    return bad("only byte-level BPE tokenizer.json files are supported (no ByteLevel pre_tokenizer or decoder); "
               "for a SentencePiece model use its tokenizer.model");
  }
  if (const auto norm = j.find("normalizer"); norm != j.end() && !norm->is_null()) {
    // NFC leaves already-composed text unchanged, which is what nearly all input is.
    const std::string* nt = str(*norm, "type");
    if (nt == nullptr || *nt != "NFC") return bad("unsupported normalizer");
  }

  // Ids may have holes; the vocabulary spans the largest id of the model and the added tokens.
  int64_t max_id = -1;
  for (const auto& [tok, id] : vocab_it->items()) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > INT32_MAX - 1) {
      return bad("model.vocab[\"" + tok + "\"] is not a valid id");
    }
    max_id = std::max(max_id, id.get<int64_t>());
  }
  const json added = j.value("added_tokens", json::array());
  if (!added.is_array()) return bad("added_tokens is not an array");
  for (const auto& a : added) {
    if (!a.is_object() || !a.contains("id") || !a["id"].is_number_integer() || !str(a, "content") ||
        a["id"].get<int64_t>() < 0 || a["id"].get<int64_t>() > INT32_MAX - 1) {
      return bad("an added_tokens entry lacks a valid id or content");
    }
    max_id = std::max(max_id, a["id"].get<int64_t>());
  }
  if (max_id < 0) return bad("the vocabulary is empty");
  v.tokens.assign(static_cast<size_t>(max_id + 1), std::string());
  v.types.assign(static_cast<size_t>(max_id + 1), piece_type::normal);
  for (const auto& [tok, id] : vocab_it->items()) v.tokens[id.get<size_t>()] = tok;
  for (const auto& a : added) {
    const auto id = a["id"].get<size_t>();
    v.tokens[id] = a["content"].get<std::string>();
    v.types[id] = flag(a, "special", false) ? piece_type::control : piece_type::user_defined;
  }
  v.literals_always = true;

  v.merges.reserve(merges_it->size());
  for (size_t i = 0; i < merges_it->size(); ++i) {
    const json& m = (*merges_it)[i];
    if (m.is_string()) {
      const std::string& s = m.get_ref<const std::string&>();
      const size_t sp = s.find(' ', 1);
      if (sp == std::string::npos) return bad("model.merges[" + std::to_string(i) + "] is not \"a b\"");
      v.merges.emplace_back(s.substr(0, sp), s.substr(sp + 1));
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      v.merges.emplace_back(m[0].get<std::string>(), m[1].get<std::string>());
    } else {
      return bad("model.merges[" + std::to_string(i) + "] is neither \"a b\" nor [a, b]");
    }
  }
  v.ignore_merges = flag(model, "ignore_merges", false);
  if (const std::string* unk = str(model, "unk_token")) {
    if (auto it = vocab_it->find(*unk); it != vocab_it->end()) v.unk_id = it->get<int32_t>();
  }

  // BOS/EOS: tokenizer_config.json names them; config.json / generation_config.json give ids.
  const auto dir = path.parent_path();
  const json tcfg = read_sidecar(dir / "tokenizer_config.json");
  const json mcfg = read_sidecar(dir / "config.json");
  const json gcfg = read_sidecar(dir / "generation_config.json");
  auto find_text = [&](const std::string& t) -> int32_t {
    for (size_t i = 0; i < v.tokens.size(); ++i) {
      if (v.types[i] != piece_type::normal && v.tokens[i] == t) return static_cast<int32_t>(i);
    }
    return -1;
  };
  const int32_t post_bos = template_bos(j.value("post_processor", json()));
  if (std::string b = token_text(tcfg, "bos_token"); !b.empty()) v.bos_id = find_text(b);
  if (v.bos_id < 0 && post_bos >= 0) v.bos_id = post_bos;
  if (v.bos_id < 0) {
    if (auto ids = ids_of(mcfg, "bos_token_id"); !ids.empty()) v.bos_id = ids[0];
  }
  if (std::string e = token_text(tcfg, "eos_token"); !e.empty()) v.eos_id = find_text(e);
  for (const json* cfg : {&gcfg, &mcfg}) {
    for (int32_t id : ids_of(*cfg, "eos_token_id")) {
      if (v.eos_id < 0) v.eos_id = id;
      v.extra_stop_ids.push_back(id);
    }
  }
  v.add_bos = flag(tcfg, "add_bos_token", post_bos >= 0);
  v.add_eos = flag(tcfg, "add_eos_token", false);
  if (auto ct = tcfg.find("chat_template"); ct != tcfg.end()) {
    if (ct->is_string()) {
      v.chat_template = ct->get<std::string>();
    } else if (ct->is_array()) {  // [{"name": "default", "template": ...}, ...]
      for (const auto& e : *ct) {
        const std::string* name = e.is_object() ? str(e, "name") : nullptr;
        const std::string* text = e.is_object() ? str(e, "template") : nullptr;
        if (name && text && (*name == "default" || v.chat_template.empty())) v.chat_template = *text;
      }
    }
  }
  return bpe_tokenizer::create(std::move(v), where);
}

}  // namespace

expected<std::unique_ptr<tokenizer>> load_tokenizer_json(const std::filesystem::path& path) {
  auto j = read_json(path);
  if (!j) return unexpected{j.error()};
  try {
    return parse(*j, path);
  } catch (const json::exception& e) {
    // Type mismatches deep in an unexpected file layout: a format error, not a crash.
    return make_error(errc::bad_format, path.string() + ": " + e.what());
  }
}

}  // namespace troupe
