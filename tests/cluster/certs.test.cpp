// `troupe certs` (cluster/certs.hpp) and the check of a node's TLS files at start (cluster/tls.hpp):
// real files in a temporary directory, read back with OpenSSL.
#include "cluster/certs.hpp"

#include <gtest/gtest.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "cluster/pem.hpp"
#include "cluster/tls.hpp"

namespace troupe::cluster {
namespace {

namespace fs = std::filesystem;

class Certs : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("troupe_certs_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  /// Makes files for nodes in dir_/sub; the report.
  certs_report make(const std::string& sub, std::vector<cert_subject> nodes) {
    certs_request req;
    req.out = dir_ / sub;
    req.cluster = "test";
    req.nodes = std::move(nodes);
    auto r = make_cluster_certs(req);
    EXPECT_TRUE(r) << r.error().what();
    return r ? *r : certs_report{};
  }
  tls_files files(const std::string& ca_sub, const std::string& sub, const std::string& node) {
    return tls_files{dir_ / ca_sub / "ca.pem", dir_ / sub / (node + ".pem"), dir_ / sub / (node + ".key")};
  }
  static std::string error_of(const status& s) { return s ? "(ok)" : s.error().message(); }

  fs::path dir_;
};

unsigned mode_of(const fs::path& p) {
  struct stat st{};
  ::stat(p.c_str(), &st);
  return st.st_mode & 0777;
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

/// The subjectAltName entries of a certificate as "IP:..." / "DNS:...".
std::vector<std::string> alt_names(const fs::path& cert_file) {
  auto cert = pem::read_cert(cert_file, "cert");
  std::vector<std::string> out;
  auto* names = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert->get(), NID_subject_alt_name, nullptr, nullptr));
  for (int i = 0; names && i < sk_GENERAL_NAME_num(names); ++i) {
    const GENERAL_NAME* n = sk_GENERAL_NAME_value(names, i);
    if (n->type == GEN_DNS) out.push_back("DNS:" + std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(n->d.dNSName))));
    if (n->type == GEN_IPADD && ASN1_STRING_length(n->d.iPAddress) == 4) {
      const unsigned char* b = ASN1_STRING_get0_data(n->d.iPAddress);
      out.push_back("IP:" + std::to_string(b[0]) + "." + std::to_string(b[1]) + "." + std::to_string(b[2]) + "." + std::to_string(b[3]));
    }
  }
  GENERAL_NAMES_free(names);
  return out;
}

TEST_F(Certs, MakesACaAndPerNodeFilesThatVerifyWithPrivateKeys) {
  const certs_report r = make("certs", {{"head", "127.0.0.1"}, {"w1", "node1.example"}});
  EXPECT_TRUE(r.made_ca);
  EXPECT_EQ(r.made, (std::vector<std::string>{"head", "w1"}));
  for (const char* f : {"ca.key", "head.key", "w1.key"}) EXPECT_EQ(mode_of(dir_ / "certs" / f), 0600u) << f;
  EXPECT_EQ(mode_of(dir_ / "certs"), 0700u);
  EXPECT_EQ(error_of(check_tls_files(files("certs", "certs", "head"))), "(ok)");
  EXPECT_EQ(error_of(check_tls_files(files("certs", "certs", "w1"))), "(ok)");
  EXPECT_EQ(key_mode_warning(dir_ / "certs/w1.key"), "");
  EXPECT_EQ(alt_names(dir_ / "certs/head.pem"), (std::vector<std::string>{"IP:127.0.0.1"}));
  EXPECT_EQ(alt_names(dir_ / "certs/w1.pem"), (std::vector<std::string>{"DNS:node1.example"}));
}

TEST_F(Certs, ARerunKeepsTheCaAndValidNodesAndMakesTheRest) {
  make("certs", {{"head", ""}, {"w1", ""}});
  const std::string ca = slurp(dir_ / "certs/ca.pem"), head = slurp(dir_ / "certs/head.pem");
  // w1's files replaced by another CA's: they no longer verify, so they are made again.
  make("other", {{"w1", ""}});
  fs::copy_file(dir_ / "other/w1.pem", dir_ / "certs/w1.pem", fs::copy_options::overwrite_existing);
  fs::copy_file(dir_ / "other/w1.key", dir_ / "certs/w1.key", fs::copy_options::overwrite_existing);
  const certs_report r = make("certs", {{"head", ""}, {"w1", ""}, {"w2", ""}});
  EXPECT_FALSE(r.made_ca);
  EXPECT_EQ(r.kept, (std::vector<std::string>{"head"}));
  EXPECT_EQ(r.made, (std::vector<std::string>{"w1", "w2"}));
  EXPECT_EQ(slurp(dir_ / "certs/ca.pem"), ca);
  EXPECT_EQ(slurp(dir_ / "certs/head.pem"), head);
  EXPECT_EQ(error_of(check_tls_files(files("certs", "certs", "w1"))), "(ok)");
}

TEST_F(Certs, FilesThatDoNotFitAreRefusedNamingTheKeyAndTheFile) {
  make("a", {{"head", ""}, {"w1", ""}});
  make("b", {{"head", ""}});
  const std::string a = (dir_ / "a").string(), b = (dir_ / "b").string();
  EXPECT_EQ(error_of(check_tls_files(files("a", "b", "head"))),
            "tls.cert: " + b + "/head.pem does not verify under the cluster CA " + a +
                "/ca.pem for TLS client use: unable to get local issuer certificate");
  EXPECT_EQ(error_of(check_tls_files({dir_ / "a/ca.pem", dir_ / "a/head.pem", dir_ / "a/w1.key"})),
            "tls.key: " + a + "/w1.key is not the key of the certificate " + a + "/head.pem");
  EXPECT_EQ(error_of(check_tls_files({dir_ / "a/nope.pem", dir_ / "a/head.pem", dir_ / "a/head.key"})),
            "tls.ca: " + a + "/nope.pem does not exist");
  std::ofstream(dir_ / "a/junk.pem") << "not a certificate\n";
  EXPECT_EQ(error_of(check_tls_files({dir_ / "a/ca.pem", dir_ / "a/junk.pem", dir_ / "a/head.key"})).rfind("tls.cert: " + a + "/junk.pem holds no PEM certificate", 0), 0u);
  // An encrypted key would make every connection ask for a passphrase: refused.
  auto key = pem::read_key(dir_ / "a/head.key", "key");
  ASSERT_TRUE(key);
  FILE* f = std::fopen((dir_ / "a/enc.key").c_str(), "w");
  PEM_write_PrivateKey(f, key->get(), EVP_aes_256_cbc(), reinterpret_cast<const unsigned char*>("pw"), 2, nullptr, nullptr);
  std::fclose(f);
  EXPECT_EQ(error_of(check_tls_files({dir_ / "a/ca.pem", dir_ / "a/head.pem", dir_ / "a/enc.key"})),
            "tls.key: " + a + "/enc.key is encrypted; nodes need an unencrypted key (kept with mode 0600)");
  fs::permissions(dir_ / "a/head.key", fs::perms::group_read | fs::perms::others_read, fs::perm_options::add);
  EXPECT_EQ(key_mode_warning(dir_ / "a/head.key"), "tls.key: " + a + "/head.key can be read by other users (mode 0644); chmod 600 it");
}

TEST_F(Certs, BadRequestsAreRefusedBeforeAnythingIsWritten) {
  certs_request req;
  req.out = dir_ / "x";
  EXPECT_EQ(make_cluster_certs(req).error().message(), "no nodes: name them with --nodes or --config");
  req.nodes = {{"../etc", ""}};
  EXPECT_EQ(make_cluster_certs(req).error().message(),
            "node name '../etc' cannot name its files: use letters, digits, '.', '_' or '-' (not 'ca')");
  req.nodes = {{"a", ""}, {"a", ""}};
  EXPECT_EQ(make_cluster_certs(req).error().message(), "node 'a' is named twice");
  req.nodes = {{"a", ""}};
  req.days = 0;
  EXPECT_EQ(make_cluster_certs(req).error().message(), "--days must be at least 1, got 0");
  EXPECT_FALSE(fs::exists(dir_ / "x"));
  // Half a CA: the key is missing, so no new node could be signed by the CA the nodes trust.
  req.days = 30;
  make("half", {{"a", ""}});
  fs::remove(dir_ / "half/ca.key");
  req.out = dir_ / "half";
  EXPECT_EQ(make_cluster_certs(req).error().message(),
            (dir_ / "half/ca.key").string() + " is missing while " + (dir_ / "half/ca.pem").string() +
                " exists: restore it, or remove both to make a new CA (every node then needs new files)");
}

}  // namespace
}  // namespace troupe::cluster
