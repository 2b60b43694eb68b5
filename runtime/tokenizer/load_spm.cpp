// Loaders of SentencePiece vocabularies outside GGUF: a SentencePiece ModelProto (tokenizer.model),
// parsed by hand, and a llama2.c tokenizer.bin. Every length and offset is bounds-checked.

#include <cstring>

#include "runtime/core/mapped_file.hpp"
#include "runtime/tokenizer/loaders.hpp"
#include "runtime/tokenizer/spm.hpp"

namespace troupe {

namespace {

// Protobuf wire format reader over a byte range; any overrun sets ok_ = false and stops.
class proto_reader {
 public:
  proto_reader(const uint8_t* p, size_t n) : p_(p), end_(p + n) {}
  bool ok() const noexcept { return ok_; }
  bool done() const noexcept { return !ok_ || p_ == end_; }

  bool varint(uint64_t& v) {
    v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (p_ == end_) return fail();
      const uint8_t b = *p_++;
      v |= static_cast<uint64_t>(b & 0x7F) << shift;
      if ((b & 0x80) == 0) return true;
    }
    return fail();
  }
  /// The next field's number and wire type.
  bool key(uint32_t& field, uint32_t& wire) {
    uint64_t k = 0;
    if (!varint(k)) return false;
    field = static_cast<uint32_t>(k >> 3);
    wire = static_cast<uint32_t>(k & 7);
    return field != 0 || fail();
  }
  bool bytes(const uint8_t*& data, size_t& n) {
    uint64_t len = 0;
    if (!varint(len)) return false;
    if (len > static_cast<uint64_t>(end_ - p_)) return fail();
    data = p_;
    n = static_cast<size_t>(len);
    p_ += n;
    return true;
  }
  bool fixed32(uint32_t& v) {
    if (end_ - p_ < 4) return fail();
    std::memcpy(&v, p_, 4);  // little-endian, as protobuf and every host troupe runs on
    p_ += 4;
    return true;
  }
  bool skip(uint32_t wire) {
    uint64_t v = 0;
    const uint8_t* d = nullptr;
    size_t n = 0;
    switch (wire) {
      case 0: return varint(v);
      case 1:
        if (end_ - p_ < 8) return fail();
        p_ += 8;
        return true;
      case 2: return bytes(d, n);
      case 5: {
        uint32_t f = 0;
        return fixed32(f);
      }
      default: return fail();  // groups (3, 4) are not used by sentencepiece_model.proto
    }
  }

 private:
  bool fail() {
    ok_ = false;
    return false;
  }
  const uint8_t* p_;
  const uint8_t* end_;
  bool ok_ = true;
};

// Proto int32 fields hold negative values as 64-bit two's complement varints (pad_id = -1); kept
// as int64 until range-checked, so 2^32 + 1 cannot pass for 1.
int64_t as_int64(uint64_t v) { return static_cast<int64_t>(v); }

expected<std::unique_ptr<tokenizer>> bad(const std::filesystem::path& path, const std::string& what) {
  return make_error(errc::bad_format, path.string() + ": " + what);
}

// One ModelProto.SentencePiece message: {1: piece, 2: score, 3: type}.
bool parse_piece(const uint8_t* data, size_t n, spm_vocab& v) {
  proto_reader r(data, n);
  std::string piece;
  float score = 0.0f;
  piece_type type = piece_type::normal;  // the proto's default
  while (!r.done()) {
    uint32_t field = 0, wire = 0;
    if (!r.key(field, wire)) break;
    if (field == 1 && wire == 2) {
      const uint8_t* d = nullptr;
      size_t len = 0;
      if (r.bytes(d, len)) piece.assign(reinterpret_cast<const char*>(d), len);
    } else if (field == 2 && wire == 5) {
      uint32_t bits = 0;
      if (r.fixed32(bits)) std::memcpy(&score, &bits, 4);
    } else if (field == 3 && wire == 0) {
      uint64_t t = 0;
      if (r.varint(t)) type = piece_type_from_int(static_cast<int64_t>(t));
    } else {
      r.skip(wire);
    }
  }
  if (!r.ok()) return false;
  v.pieces.push_back(std::move(piece));
  v.scores.push_back(score);
  v.types.push_back(type);
  return true;
}

}  // namespace

expected<std::unique_ptr<tokenizer>> load_sentencepiece_model(const std::filesystem::path& path) {
  auto file = mapped_file::open(path);
  if (!file) return unexpected{file.error()};
  const mapped_file& f = **file;
  if (f.size() == 0) return bad(path, "empty file, expected a SentencePiece ModelProto");

  spm_vocab v;
  v.normalizer.remove_extra_whitespaces = true;  // NormalizerSpec defaults
  v.normalizer.add_dummy_prefix = true;
  v.normalizer.escape_whitespaces = true;
  v.byte_fallback = false;  // TrainerSpec default
  v.add_bos = true;         // SentencePiece models are Llama-family: prompts start with BOS
  int64_t model_type = 1;   // UNIGRAM is the proto's default
  int64_t ids[3] = {v.unk_id, v.bos_id, v.eos_id};  // trainer_spec fields 40, 41, 42
  std::string normalizer_name;
  bool has_charsmap = false;

  proto_reader r(f.data(), f.size());
  while (!r.done()) {
    uint32_t field = 0, wire = 0;
    if (!r.key(field, wire)) break;
    if (wire != 2 || field < 1 || field > 3) {
      r.skip(wire);
      continue;
    }
    const uint8_t* d = nullptr;
    size_t n = 0;
    if (!r.bytes(d, n)) break;
    if (field == 1) {
      if (!parse_piece(d, n, v)) return bad(path, "piece " + std::to_string(v.pieces.size()) + " is corrupt");
      continue;
    }
    proto_reader sub(d, n);
    while (!sub.done()) {
      uint32_t sf = 0, sw = 0;
      if (!sub.key(sf, sw)) break;
      uint64_t x = 0;
      if (sw != 0) {
        if (field == 3 && sw == 2 && (sf == 1 || sf == 2)) {
          const uint8_t* sd = nullptr;
          size_t sn = 0;
          if (!sub.bytes(sd, sn)) break;
          if (sf == 1) normalizer_name.assign(reinterpret_cast<const char*>(sd), sn);
          if (sf == 2) has_charsmap = sn > 0;
        } else {
          sub.skip(sw);
        }
        continue;
      }
      if (!sub.varint(x)) break;
      if (field == 2) {  // TrainerSpec
        switch (sf) {
          case 3: model_type = static_cast<int64_t>(x); break;
          case 35: v.byte_fallback = x != 0; break;
          case 40: case 41: case 42: ids[sf - 40] = as_int64(x); break;
          default: break;  // 43 pad_id: troupe never pads
        }
      } else {  // NormalizerSpec
        switch (sf) {
          case 3: v.normalizer.add_dummy_prefix = x != 0; break;
          case 4: v.normalizer.remove_extra_whitespaces = x != 0; break;
          case 5: v.normalizer.escape_whitespaces = x != 0; break;
          default: break;
        }
      }
    }
    if (!sub.ok()) return bad(path, field == 2 ? "the trainer spec is corrupt" : "the normalizer spec is corrupt");
  }
  if (!r.ok()) return bad(path, "not a SentencePiece model (corrupt or truncated protobuf)");
  if (v.pieces.empty()) return bad(path, "not a SentencePiece model (no pieces)");
  // SentencePiece disables a special token with -1; any other id must be one of the pieces.
  const char* const id_names[3] = {"unk_id", "bos_id", "eos_id"};
  for (int i = 0; i < 3; ++i) {
    if (ids[i] != -1 && (ids[i] < 0 || static_cast<uint64_t>(ids[i]) >= v.pieces.size())) {
      return bad(path, std::string("trainer_spec.") + id_names[i] + " is " + std::to_string(ids[i]) +
                           ", outside the vocabulary of " + std::to_string(v.pieces.size()) + " pieces");
    }
  }
  v.unk_id = static_cast<int32_t>(ids[0]);
  v.bos_id = static_cast<int32_t>(ids[1]);
  v.eos_id = static_cast<int32_t>(ids[2]);
  if (model_type != 2) {
    return bad(path, "SentencePiece model type " + std::to_string(model_type) +
                         " is not supported (troupe implements BPE, type 2; 1 is unigram)");
  }
  if (has_charsmap && normalizer_name != "identity") {
    return bad(path, "SentencePiece normalizer '" + normalizer_name +
                         "' (a precompiled character map) is not supported; only 'identity'");
  }
  return spm_tokenizer::create(std::move(v), path.string());
}

expected<std::unique_ptr<tokenizer>> load_llama2c_tokenizer(const std::filesystem::path& path, int32_t n_vocab) {
  auto file = mapped_file::open(path);
  if (!file) return unexpected{file.error()};
  const mapped_file& f = **file;
  const uint8_t* p = f.data();
  const size_t size = f.size();
  if (size < 4) return make_error(errc::truncated, path.string() + ": too short for a llama2.c tokenizer");
  int32_t max_len = 0;
  std::memcpy(&max_len, p, 4);
  if (max_len <= 0 || max_len > (1 << 20)) {
    return bad(path, "max_token_length " + std::to_string(max_len) + " is not plausible for a llama2.c tokenizer");
  }
  if (n_vocab < 0) return make_error(errc::invalid_argument, path.string() + ": negative vocabulary size");

  spm_vocab v;
  size_t pos = 4;
  // The file does not store its size: read n_vocab tokens when the model says, else to the end.
  while (n_vocab > 0 ? v.pieces.size() < static_cast<size_t>(n_vocab) : pos < size) {
    const std::string at = "token " + std::to_string(v.pieces.size()) + " at byte " + std::to_string(pos);
    if (size - pos < 8) {
      return make_error(errc::truncated, path.string() + ": " + at + ": file ends inside the record" +
                                             (n_vocab > 0 ? " (the model has " + std::to_string(n_vocab) + " tokens)" : ""));
    }
    float score = 0.0f;
    int32_t len = 0;
    std::memcpy(&score, p + pos, 4);
    std::memcpy(&len, p + pos + 4, 4);
    pos += 8;
    if (len < 0 || static_cast<size_t>(len) > size - pos) {
      return bad(path, at + ": length " + std::to_string(len) + " runs past the end of the file");
    }
    std::string text(reinterpret_cast<const char*>(p + pos), static_cast<size_t>(len));
    pos += static_cast<size_t>(len);
    // llama2.c's export wrote "▁" as ' ' and BOS/EOS as "\n<s>\n" / "\n</s>\n": undo both.
    const size_t id = v.pieces.size();
    piece_type type = piece_type::normal;
    if (id == 0) {
      type = piece_type::unknown;
    } else if (id == 1 || id == 2) {
      type = piece_type::control;
      text = id == 1 ? "<s>" : "</s>";
    } else if (text.size() == 6 && text.starts_with("<0x") && text[5] == '>') {
      type = piece_type::byte;
    }
    if (type == piece_type::normal) {
      std::string escaped;
      for (char c : text) {
        if (c == ' ') {
          escaped += "\xE2\x96\x81";
        } else {
          escaped += c;
        }
      }
      text = std::move(escaped);
    }
    v.pieces.push_back(std::move(text));
    v.scores.push_back(score);
    v.types.push_back(type);
  }
  if (v.pieces.size() < 3) return bad(path, "a llama2.c tokenizer needs at least <unk>, <s> and </s>");
  // Behaves as llama.cpp on the same vocabulary in GGUF: dummy prefix, whitespace kept.
  v.normalizer.remove_extra_whitespaces = false;
  v.byte_fallback = true;
  return spm_tokenizer::create(std::move(v), path.string());
}

}  // namespace troupe
