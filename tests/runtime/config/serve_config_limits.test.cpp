// Hostile configs (issue 11): out-of-range numbers, duplicate keys, undefined ${VAR}s and more than
// one YAML document are refused naming the key (and the value, the range, the lines, the variable)
// instead of being clamped, ignored or expanded to nothing.
#include "runtime/config/serve_config.hpp"
#include "tests/runtime/config/parse_util.hpp"

#include <gtest/gtest.h>

#include <cstdlib>

namespace troupe {
namespace {

using test::error_of;
using test::parse;

/// The error of a config with one model whose entry has `extra` keys ("name: a, path: x" first).
std::string model_error(const std::string& extra) { return error_of("models:\n  - {name: a, path: x, " + extra + "}\n"); }

#define EXPECT_HAS(text, part) EXPECT_NE((text).find(part), std::string::npos) << (text)

TEST(ServeConfigLimits, AHugeKvCacheIsRefusedNotClamped) {
  const std::string e = model_error("kv_cache_mb: 100000000");
  EXPECT_HAS(e, "models[0].kv_cache_mb: must be an integer in 1..16777216 (MiB), got 100000000");
}

TEST(ServeConfigLimits, EveryIntegerKeyRefusesNegativeZeroFractionalAndHugeValues) {
  struct key_case {
    const char* key;
    const char* range;
  };
  for (const key_case& k : {key_case{"replicas", "1..256"}, key_case{"threads", "0..1024"},
                            key_case{"kv_cache_mb", "1..16777216 (MiB)"}, key_case{"kv_blocks", "0..2147483647"},
                            key_case{"max_num_seqs", "1..65536"}, key_case{"max_num_batched_tokens", "1..16777216"}}) {
    for (const char* bad : {"-1", "1.5", "99999999999999999999999", "2147483648000", "ten", "[1]"}) {
      const std::string e = model_error(std::string(k.key) + ": " + bad);
      EXPECT_HAS(e, std::string("models[0].") + k.key + ": must be an integer in " + k.range + ", got ");
    }
  }
  EXPECT_HAS(model_error("replicas: 0"), "models[0].replicas: must be an integer in 1..256, got 0");
  EXPECT_HAS(model_error("max_num_seqs: 0"), "models[0].max_num_seqs: must be an integer in 1..65536, got 0");
  EXPECT_HAS(model_error("kv_cache_mb: 0"), "models[0].kv_cache_mb: must be an integer in 1..16777216 (MiB), got 0");
  // The bounds themselves are accepted.
  auto ok = parse("models:\n  - {name: a, path: x, replicas: 256, threads: 1024, kv_cache_mb: 16777216, kv_blocks: 2147483647}\n");
  ASSERT_TRUE(ok) << ok.error().what();
  EXPECT_EQ(ok->models[0].kv_blocks, 2147483647);
}

TEST(ServeConfigLimits, ServerPortsAndThreads) {
  const std::string m = "models:\n  - {name: a, path: x}\n";
  EXPECT_HAS(error_of("server: {port: 70000}\n" + m), "server.port: must be an integer in 0..65535, got 70000");
  EXPECT_HAS(error_of("server: {port: -1}\n" + m), "server.port: must be an integer in 0..65535, got -1");
  EXPECT_HAS(error_of("server: {port: 4294967376}\n" + m), "server.port: must be an integer in 0..65535, got 4294967376");
  EXPECT_HAS(error_of("server: {http_threads: 0}\n" + m), "server.http_threads: must be an integer in 1..1024, got 0");
  EXPECT_HAS(error_of("server: {http_threads: 100000}\n" + m), "server.http_threads: must be an integer in 1..1024, got 100000");
  EXPECT_HAS(error_of("routing: {virtual_nodes: 99999999999}\n" + m),
             "routing.virtual_nodes: must be an integer in 1..4096, got 99999999999");
}

TEST(ServeConfigLimits, ADuplicateTopLevelKeyNamesTheKeyAndBothLines) {
  const std::string e = error_of("server: {port: 8001}\nmodels:\n  - {name: a, path: x}\nserver: {port: 8002}\n");
  EXPECT_HAS(e, "test.yaml: server: duplicate key on lines 1 and 4");
}

TEST(ServeConfigLimits, DuplicateNestedKeysAreRefusedToo) {
  EXPECT_HAS(error_of("models:\n  - name: a\n    path: x\n    threads: 1\n    threads: 2\n"),
             "test.yaml: models[0].threads: duplicate key on lines 4 and 5");
  EXPECT_HAS(error_of("models:\n  - {name: a, path: x, kv_blocks: 8, kv_blocks: 9}\n"),
             "test.yaml: models[0].kv_blocks: duplicate key on line 2 (columns 24 and 38)");
  EXPECT_HAS(error_of("routing:\n  strategy: chwbl\n  strategy: round-robin\nmodels:\n  - {name: a, path: x}\n"),
             "test.yaml: routing.strategy: duplicate key on lines 2 and 3");
  // The same key in two different maps is no duplicate.
  EXPECT_TRUE(parse("models:\n  - {name: a, path: x}\n  - {name: b, path: y}\n"));
}

TEST(ServeConfigLimits, ASecondYamlDocumentIsRefused) {
  EXPECT_HAS(error_of("models:\n  - {name: a, path: x}\n---\nmodels:\n  - {name: b, path: y}\n"),
             "test.yaml: (top level): a second YAML document starts on line 3");
  EXPECT_HAS(error_of("models:\n  - {name: a, path: x}\n---\n---\nserver: {port: 1}\n"),
             "test.yaml: (top level): a second YAML document starts on line 4");
  // An empty one drops nothing.
  EXPECT_TRUE(parse("models:\n  - {name: a, path: x}\n---\n"));
  EXPECT_TRUE(parse("---\nmodels:\n  - {name: a, path: x}\n...\n"));
}

TEST(ServeConfigLimits, AnUndefinedVariableIsAnErrorNamingItAndTheLine) {
  ::unsetenv("TROUPE_TEST_UNSET_VAR");
  const std::string e = error_of("models:\n  - name: a\n    path: ${TROUPE_TEST_UNSET_VAR}/m.gguf\n");
  EXPECT_HAS(e, "test.yaml: models[0].path: ${TROUPE_TEST_UNSET_VAR} on line 3 is not set");
  EXPECT_EQ(e.find("/base"), std::string::npos) << e;  // not the mangled path
  EXPECT_HAS(error_of("models:\n  - {name: a, path: x, tokenizer: \"${TROUPE_TEST_UNSET_VAR}\"}\n"),
             "models[0].tokenizer: ${TROUPE_TEST_UNSET_VAR} on line 2 is not set");
}

TEST(ServeConfigLimits, VariableDefaultsAndMalformedReferences) {
  ::unsetenv("TROUPE_TEST_UNSET_VAR");
  ::setenv("TROUPE_TEST_SET_VAR", "/models", 1);
  ::setenv("TROUPE_TEST_EMPTY_VAR", "", 1);
  auto c = parse("models:\n  - {name: a, path: \"${TROUPE_TEST_UNSET_VAR:-/fallback}/m.gguf\"}\n"
                 "  - {name: b, path: \"${TROUPE_TEST_SET_VAR:-/fallback}/m.gguf\"}\n"
                 "  - {name: c, path: \"${TROUPE_TEST_EMPTY_VAR:-/fallback}/m.gguf\"}\n"
                 "  - {name: d, path: \"$HOME/a$b.gguf\"}\n");
  ASSERT_TRUE(c) << c.error().what();
  EXPECT_EQ(c->models[0].path, "/fallback/m.gguf");
  EXPECT_EQ(c->models[1].path, "/models/m.gguf");
  EXPECT_EQ(c->models[2].path, "/fallback/m.gguf");  // as in the shell: an empty value takes the default
  EXPECT_EQ(c->models[3].path, "/base/$HOME/a$b.gguf");  // only ${...} expands
  EXPECT_HAS(error_of("models:\n  - {name: a, path: \"${TROUPE_TEST_UNSET_VAR:-}\"}\n"),
             "models[0].path: is empty once its ${...} are expanded");
  EXPECT_HAS(model_error("tokenizer: \"${TROUPE_TEST_SET_VAR\""), "models[0].tokenizer: an unterminated ${ on line 2");
  EXPECT_HAS(model_error("tokenizer: \"${}\""), "models[0].tokenizer: ${} on line 2: not a variable name");
  EXPECT_HAS(model_error("tokenizer: \"${A B}\""), "models[0].tokenizer: ${A B} on line 2: not a variable name");
}

TEST(ServeConfigLimits, AVariableCannotInjectYaml) {
  // The value is expanded after parsing, into the one string: it adds no keys and no structure.
  ::setenv("TROUPE_TEST_SET_VAR", "x.gguf\n    replicas: 9\n  - {name: evil, path: y}", 1);
  auto c = parse("models:\n  - name: a\n    path: ${TROUPE_TEST_SET_VAR}\n");
  ASSERT_TRUE(c) << c.error().what();
  ASSERT_EQ(c->models.size(), 1u);
  EXPECT_EQ(c->models[0].replicas, 1);
  EXPECT_HAS(c->models[0].path, "{name: evil, path: y}");
}

TEST(ServeConfigLimits, OddYamlIsAnErrorNotACrash) {
  // Complex keys, aliases (as keys too), null keys, self-reference, deep nesting: each an error.
  for (const std::string text :
       {std::string("? [a, b]\n: 1\nmodels: [{name: a, path: x}]\n"), std::string("models: &m [*m]\n"),
        std::string("x: &k models\n*k : 1\n"), std::string(": 1\nmodels: [{name: a, path: x}]\n"),
        std::string("models:\n  - {name: a, path: x, ~: 1}\n"), std::string("models:\n  - {name: a, path: [x]}\n"),
        std::string(20000, '[') + std::string(20000, ']'), std::string(20000, '{'), std::string("\xff\xfe\x00\x01", 4),
        std::string("models:\n  - {name: a, path: x, <<: {replicas: 2}}\n")}) {
    auto c = parse(text);
    EXPECT_FALSE(c) << text.substr(0, 60);
  }
  // An alias key repeated is not compared (its text is not known while reading), a merge key is unknown.
  EXPECT_HAS(error_of("models:\n  - {name: a, path: x, <<: {replicas: 2}}\n"), "models[0].<<: unknown key");
}

TEST(ServeConfigLimits, AKvBudgetAboveThePhysicalMemoryIsRefusedWithBothFigures) {
  EXPECT_GT(physical_memory_bytes(), uint64_t{64} << 20);
  model_config m;
  m.kv_cache_mb = 4096;
  const auto st = check_kv_memory(m, "test.yaml", "models[0].", uint64_t{1} << 30);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().message(),
            "test.yaml: models[0].kv_cache_mb: 4096 MiB is more than this machine's physical memory (1024 MiB)");
  m.kv_cache_mb = 1024;
  EXPECT_TRUE(check_kv_memory(m, "test.yaml", "models[0].", uint64_t{1} << 30));
  // A GPU's KV cache lives in its memory, which the runner checks when it allocates.
  m.kv_cache_mb = 4096;
  m.device = "cuda:0";
  EXPECT_TRUE(check_kv_memory(m, "test.yaml", "models[0].", uint64_t{1} << 30));
}

}  // namespace
}  // namespace troupe
