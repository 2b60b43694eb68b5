#include "cluster/certs.hpp"

#include <arpa/inet.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <set>

#include "cluster/cluster_config.hpp"
#include "cluster/pem.hpp"
#include "cluster/tls.hpp"

namespace troupe::cluster {
namespace {

namespace fs = std::filesystem;
using pem::openssl_error;
using pem::pkey_ptr;
using pem::x509_ptr;

/// The CA's certificate and key.
struct authority {
  x509_ptr cert;
  pkey_ptr key;
};

bool is_ip(const std::string& host) {
  unsigned char buf[sizeof(in6_addr)];
  return ::inet_pton(AF_INET, host.c_str(), buf) == 1 || ::inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

expected<pkey_ptr> new_key() {
  pkey_ptr key(EVP_EC_gen("P-256"));
  if (!key) return make_error(errc::internal, "cannot generate a P-256 key: " + openssl_error());
  return key;
}

/// Adds extension `nid` with OpenSSL's config-string value (e.g. "critical,CA:TRUE").
status add_ext(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
  if (!ext) return make_error(errc::internal, "cannot make extension " + value + ": " + openssl_error());
  const int ok = X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
  if (ok != 1) return make_error(errc::internal, "cannot add extension " + value + ": " + openssl_error());
  return {};
}

/// A certificate for `key` with subject CN=cn, O=org, valid for `days` from an hour ago (clock skew),
/// a random 127-bit serial; issued by `issuer` (the certificate itself when null).
expected<x509_ptr> new_cert(EVP_PKEY* key, const std::string& cn, const std::string& org, int days, X509* issuer) {
  x509_ptr cert(X509_new());
  if (!cert) return make_error(errc::internal, "cannot make a certificate: " + openssl_error());
  X509_set_version(cert.get(), 2);  // v3
  BIGNUM* serial = BN_new();
  const bool serial_ok = serial && BN_rand(serial, 127, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) == 1 &&
                         BN_to_ASN1_INTEGER(serial, X509_get_serialNumber(cert.get())) != nullptr;
  BN_free(serial);
  if (!serial_ok) return make_error(errc::internal, "cannot make a serial number: " + openssl_error());
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), static_cast<long>(days) * 86400L);
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8, reinterpret_cast<const unsigned char*>(org.c_str()), -1, -1, 0);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  X509_set_issuer_name(cert.get(), issuer ? X509_get_subject_name(issuer) : name);
  if (X509_set_pubkey(cert.get(), key) != 1) return make_error(errc::internal, "cannot set the public key: " + openssl_error());
  return cert;
}

status sign(X509* cert, EVP_PKEY* key) {
  if (X509_sign(cert, key, EVP_sha256()) <= 0) return make_error(errc::internal, "cannot sign: " + openssl_error());
  return {};
}

expected<authority> make_ca(const std::string& cluster, int days) {
  auto key = new_key();
  TROUPE_TRY(key);
  auto cert = new_cert(key->get(), "troupe cluster CA (" + cluster + ")", "troupe cluster " + cluster, std::max(days, 3650), nullptr);
  TROUPE_TRY(cert);
  X509* c = cert->get();
  TROUPE_TRY(add_ext(c, c, NID_basic_constraints, "critical,CA:TRUE,pathlen:0"));
  TROUPE_TRY(add_ext(c, c, NID_key_usage, "critical,keyCertSign,cRLSign"));
  TROUPE_TRY(add_ext(c, c, NID_subject_key_identifier, "hash"));
  TROUPE_TRY(sign(c, key->get()));
  return authority{std::move(*cert), std::move(*key)};
}

/// The CA in dir, or a new one written there.
expected<authority> load_or_make_ca(const fs::path& dir, const std::string& cluster, int days, bool& made) {
  const fs::path pem = dir / "ca.pem", key = dir / "ca.key";
  const bool has_pem = fs::exists(pem), has_key = fs::exists(key);
  if (has_pem != has_key)
    return make_error(errc::invalid_argument, (has_pem ? key : pem).string() + " is missing while " + (has_pem ? pem : key).string() +
                                                  " exists: restore it, or remove both to make a new CA (every node then needs new files)");
  if (has_pem) {
    auto c = pem::read_cert(pem, "the CA certificate");
    TROUPE_TRY(c);
    auto k = pem::read_key(key, "the CA key");
    TROUPE_TRY(k);
    if (X509_check_private_key(c->get(), k->get()) != 1) {
      ERR_clear_error();
      return make_error(errc::invalid_argument, key.string() + " is not the key of " + pem.string());
    }
    made = false;
    return authority{std::move(*c), std::move(*k)};
  }
  auto ca = make_ca(cluster, days);
  TROUPE_TRY(ca);
  TROUPE_TRY(pem::write_key(key, ca->key.get()));
  TROUPE_TRY(pem::write_cert(pem, ca->cert.get()));
  made = true;
  return ca;
}

status make_node(const fs::path& dir, const authority& ca, const cert_subject& n, const std::string& cluster, int days) {
  auto key = new_key();
  TROUPE_TRY(key);
  auto cert = new_cert(key->get(), n.node, "troupe cluster " + cluster, days, ca.cert.get());
  TROUPE_TRY(cert);
  X509* c = cert->get();
  TROUPE_TRY(add_ext(c, ca.cert.get(), NID_basic_constraints, "critical,CA:FALSE"));
  TROUPE_TRY(add_ext(c, ca.cert.get(), NID_key_usage, "critical,digitalSignature"));
  TROUPE_TRY(add_ext(c, ca.cert.get(), NID_ext_key_usage, "serverAuth,clientAuth"));
  TROUPE_TRY(add_ext(c, ca.cert.get(), NID_subject_key_identifier, "hash"));
  TROUPE_TRY(add_ext(c, ca.cert.get(), NID_authority_key_identifier, "keyid:always"));
  if (!n.host.empty()) TROUPE_TRY(add_ext(c, ca.cert.get(), NID_subject_alt_name, (is_ip(n.host) ? "IP:" : "DNS:") + n.host));
  TROUPE_TRY(sign(c, ca.key.get()));
  TROUPE_TRY(pem::write_key(dir / (n.node + ".key"), key->get()));
  return pem::write_cert(dir / (n.node + ".pem"), c);
}

}  // namespace

expected<certs_report> make_cluster_certs(const certs_request& req) {
  if (req.nodes.empty()) return make_error(errc::invalid_argument, "no nodes: name them with --nodes or --config");
  if (req.days < 1) return make_error(errc::invalid_argument, "--days must be at least 1, got " + std::to_string(req.days));
  std::set<std::string> seen;
  for (const auto& n : req.nodes) {
    if (!is_file_safe_name(n.node))
      return make_error(errc::invalid_argument, "node name '" + n.node + "' cannot name its files: use letters, digits, '.', '_' or '-' (not 'ca')");
    if (!seen.insert(n.node).second) return make_error(errc::invalid_argument, "node '" + n.node + "' is named twice");
  }
  std::error_code ec;
  if (!fs::exists(req.out)) {
    fs::create_directories(req.out, ec);
    if (ec) return make_error(errc::io_error, "cannot create " + req.out.string() + ": " + ec.message());
    fs::permissions(req.out, fs::perms::owner_all, ec);
  } else if (!fs::is_directory(req.out)) {
    return make_error(errc::invalid_argument, req.out.string() + " is not a directory");
  }
  certs_report report;
  auto ca = load_or_make_ca(req.out, req.cluster, req.days, report.made_ca);
  TROUPE_TRY(ca);
  for (const auto& n : req.nodes) {
    const tls_files files{req.out / "ca.pem", req.out / (n.node + ".pem"), req.out / (n.node + ".key")};
    if (fs::exists(files.cert) && fs::exists(files.key) && check_tls_files(files)) {
      report.kept.push_back(n.node);
      continue;
    }
    TROUPE_TRY(make_node(req.out, *ca, n, req.cluster, req.days));
    report.made.push_back(n.node);
  }
  return report;
}

}  // namespace troupe::cluster
