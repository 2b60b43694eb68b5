#pragma once
// OpenSSL objects held in unique_ptrs, and PEM files read and written with errors that name the file
// (shared by the TLS checks and `troupe certs`).

#include <openssl/evp.h>
#include <openssl/x509.h>

#include <filesystem>
#include <memory>
#include <string>

#include "runtime/core/error.hpp"

namespace troupe::cluster::pem {

struct x509_free {
  void operator()(X509* p) const { X509_free(p); }
};
struct pkey_free {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
using x509_ptr = std::unique_ptr<X509, x509_free>;
using pkey_ptr = std::unique_ptr<EVP_PKEY, pkey_free>;

/// OpenSSL's queued errors as one line (and clears the queue); "unknown error" when none.
std::string openssl_error();

/// The first certificate of a PEM file; `what` names it in errors ("tls.ca", "the CA certificate").
expected<x509_ptr> read_cert(const std::filesystem::path& file, const std::string& what);
/// An unencrypted PEM private key; an encrypted one is an error saying so.
expected<pkey_ptr> read_key(const std::filesystem::path& file, const std::string& what);

/// Writes cert as PEM (mode 0644).
status write_cert(const std::filesystem::path& file, X509* cert);
/// Writes key as unencrypted PKCS#8 PEM, created with mode 0600 (replacing any file there).
status write_key(const std::filesystem::path& file, EVP_PKEY* key);

}  // namespace troupe::cluster::pem
