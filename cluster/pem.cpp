#include "cluster/pem.hpp"

#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace troupe::cluster::pem {
namespace {

namespace fs = std::filesystem;

struct bio_free {
  void operator()(BIO* p) const { BIO_free(p); }
};
using bio_ptr = std::unique_ptr<BIO, bio_free>;

/// The file opened for reading, or an error naming it.
expected<bio_ptr> open_read(const fs::path& file, const std::string& what) {
  std::error_code ec;
  if (!fs::is_regular_file(file, ec)) return make_error(errc::not_found, what + ": " + file.string() + " does not exist");
  bio_ptr bio(BIO_new_file(file.c_str(), "r"));
  if (!bio) return make_error(errc::io_error, what + ": cannot open " + file.string() + ": " + openssl_error());
  return bio;
}

/// A passphrase callback that has none: an encrypted key fails to load instead of prompting on the tty.
int no_passphrase(char*, int, int, void* asked) {
  *static_cast<bool*>(asked) = true;
  return -1;
}

/// Writes PEM text produced by `emit` into file, created with `mode` (an old file is replaced).
template <class Emit>
status write_pem(const fs::path& file, mode_t mode, Emit emit) {
  bio_ptr mem(BIO_new(BIO_s_mem()));
  if (!mem || emit(mem.get()) != 1) return make_error(errc::internal, "cannot encode " + file.string() + ": " + openssl_error());
  char* data = nullptr;
  const long len = BIO_get_mem_data(mem.get(), &data);
  ::unlink(file.c_str());  // O_CREAT keeps an old file's mode: start from none
  const int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) return make_error(errc::io_error, "cannot create " + file.string() + ": " + std::strerror(errno));
  const bool ok = ::write(fd, data, static_cast<size_t>(len)) == len;
  const int saved = errno;
  ::close(fd);
  if (!ok) return make_error(errc::io_error, "cannot write " + file.string() + ": " + std::strerror(saved));
  return {};
}

}  // namespace

std::string openssl_error() {
  std::string out;
  while (const unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    out += (out.empty() ? "" : "; ") + std::string(buf);
  }
  return out.empty() ? "unknown error" : out;
}

expected<x509_ptr> read_cert(const fs::path& file, const std::string& what) {
  auto bio = open_read(file, what);
  TROUPE_TRY(bio);
  x509_ptr cert(PEM_read_bio_X509(bio->get(), nullptr, nullptr, nullptr));
  if (!cert)
    return make_error(errc::bad_format, what + ": " + file.string() + " holds no PEM certificate (" + openssl_error() + ")");
  return cert;
}

expected<pkey_ptr> read_key(const fs::path& file, const std::string& what) {
  auto bio = open_read(file, what);
  TROUPE_TRY(bio);
  bool asked = false;
  pkey_ptr key(PEM_read_bio_PrivateKey(bio->get(), nullptr, no_passphrase, &asked));
  if (!key && asked) {
    ERR_clear_error();
    return make_error(errc::invalid_argument, what + ": " + file.string() +
                                                  " is encrypted; nodes need an unencrypted key (kept with mode 0600)");
  }
  if (!key) return make_error(errc::bad_format, what + ": " + file.string() + " holds no PEM private key (" + openssl_error() + ")");
  return key;
}

status write_cert(const fs::path& file, X509* cert) {
  return write_pem(file, 0644, [&](BIO* b) { return PEM_write_bio_X509(b, cert); });
}

status write_key(const fs::path& file, EVP_PKEY* key) {
  return write_pem(file, 0600, [&](BIO* b) { return PEM_write_bio_PrivateKey(b, key, nullptr, nullptr, 0, nullptr, nullptr); });
}

}  // namespace troupe::cluster::pem
