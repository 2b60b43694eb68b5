#include "cluster/tls.hpp"

#include <arpa/inet.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <caf/io/middleman.hpp>
#include <caf/openssl/manager.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "cluster/pem.hpp"
#include "runtime/core/log.hpp"

namespace troupe::cluster {
namespace {

namespace fs = std::filesystem;

struct store_free {
  void operator()(X509_STORE* p) const { X509_STORE_free(p); }
};
struct store_ctx_free {
  void operator()(X509_STORE_CTX* p) const { X509_STORE_CTX_free(p); }
};

/// "" when cert verifies under ca for `purpose`, else OpenSSL's reason.
std::string verify_under(X509* ca, X509* cert, int purpose) {
  std::unique_ptr<X509_STORE, store_free> store(X509_STORE_new());
  std::unique_ptr<X509_STORE_CTX, store_ctx_free> ctx(X509_STORE_CTX_new());
  if (!store || !ctx || X509_STORE_add_cert(store.get(), ca) != 1 || X509_STORE_CTX_init(ctx.get(), store.get(), cert, nullptr) != 1)
    return pem::openssl_error();
  X509_STORE_CTX_set_purpose(ctx.get(), purpose);
  if (X509_verify_cert(ctx.get()) == 1) return "";
  return X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx.get()));
}

// ---- Wrappers of CAF's OpenSSL calls ----
//
// CAF's session (libcaf_openssl/src/openssl/session.cpp) calls SSL_accept, SSL_connect, SSL_read and
// SSL_write itself, with no hook. troupe's executable defines these symbols (exported to the dynamic
// table, see cluster/CMakeLists.txt), so libcaf_openssl's calls land here, and each calls OpenSSL's own
// function. Three things are added:
//
// - The thread's OpenSSL error queue is cleared before each call, as SSL_get_error requires. CAF
//   drains it only inside its log macros, which Debian's build compiles out: one failed handshake left
//   its error queued in the I/O thread, and the next SSL_get_error of every other connection of that
//   thread read it as a fatal error and closed a healthy peer's connection (a single garbage connection
//   to a node dropped its links to the other nodes).
// - A handshake that failed for good (not "wants more bytes") is logged with the peer and the reason:
//   CAF's module logs nothing in a build without CAF logging.
// - An accepted connection that has not completed its handshake within tls.handshake_timeout_ms is
//   shut down: CAF has no such timeout, and each silent connection held ~47 KB (an SSL context) for
//   as long as the client kept it open. A watchdog thread holds a dup of each pending socket (so it
//   never touches a descriptor CAF has closed and the kernel reused) and shuts it down at the
//   deadline; CAF's next read then fails the handshake and closes the connection.

std::string node_label = "?";  // set by configure_tls before any connection
std::chrono::milliseconds handshake_timeout{10000};

/// "1.2.3.4:5678" of the socket's peer.
std::string peer_of(const SSL* ssl) {
  sockaddr_storage a{};
  socklen_t len = sizeof a;
  const int fd = SSL_get_fd(ssl);
  if (fd < 0 || ::getpeername(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) return "an unknown peer";
  char host[INET6_ADDRSTRLEN] = "?";
  int port = 0;
  if (a.ss_family == AF_INET) {
    const auto* v4 = reinterpret_cast<const sockaddr_in*>(&a);
    ::inet_ntop(AF_INET, &v4->sin_addr, host, sizeof host);
    port = ntohs(v4->sin_port);
  } else if (a.ss_family == AF_INET6) {
    const auto* v6 = reinterpret_cast<const sockaddr_in6*>(&a);
    ::inet_ntop(AF_INET6, &v6->sin6_addr, host, sizeof host);
    port = ntohs(v6->sin6_port);
  }
  return std::string(host) + ":" + std::to_string(port);
}

/// Why the handshake failed, without taking OpenSSL's error queue from CAF (it peeks, never pops).
std::string failure_reason(const SSL* ssl, int ssl_error, bool timed_out) {
  if (timed_out) return "no TLS handshake within " + std::to_string(handshake_timeout.count()) + " ms";
  if (const long v = SSL_get_verify_result(ssl); v != X509_V_OK)
    return std::string("peer certificate: ") + X509_verify_cert_error_string(v);
  if (const unsigned long e = ERR_peek_last_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    return buf;
  }
  return ssl_error == SSL_ERROR_SYSCALL ? "the connection closed during the handshake" : "handshake failed";
}

/// What the wrappers keep per connection: its peer (read while the socket is fresh: once the handshake
/// failed the peer may be gone), whether its failure was logged (CAF calls again after a failure), and
/// while an accepted connection's handshake is pending, the watchdog's dup of its socket.
struct connection_note {
  std::string peer;
  bool logged = false;
  int watch_fd = -1;
  std::chrono::steady_clock::time_point deadline;
  std::atomic<bool> timed_out{false};
};

std::mutex watch_mu;
std::set<connection_note*> watched;  // pending handshakes, guarded by watch_mu (as is every watch_fd)

/// Shuts down every pending handshake past its deadline, forever (a detached thread).
[[noreturn]] void watchdog() {
  for (;;) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    const auto now = std::chrono::steady_clock::now();
    std::lock_guard lock(watch_mu);
    for (auto it = watched.begin(); it != watched.end();) {
      if (now < (*it)->deadline) {
        ++it;
        continue;
      }
      (*it)->timed_out = true;
      ::shutdown((*it)->watch_fd, SHUT_RDWR);
      it = watched.erase(it);
    }
  }
}

void watch(connection_note& n, int fd) {
  std::lock_guard lock(watch_mu);
  n.watch_fd = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (n.watch_fd < 0) return;  // out of descriptors: the connection goes unwatched
  n.deadline = std::chrono::steady_clock::now() + handshake_timeout;
  watched.insert(&n);
  static std::once_flag started;
  std::call_once(started, [] { std::thread(watchdog).detach(); });
}

void unwatch(connection_note& n) {
  std::lock_guard lock(watch_mu);
  watched.erase(&n);
  if (n.watch_fd >= 0) ::close(n.watch_fd);
  n.watch_fd = -1;
}

void free_note(void*, void* p, CRYPTO_EX_DATA*, int, long, void*) {
  auto* note = static_cast<connection_note*>(p);
  if (!note) return;
  unwatch(*note);
  delete note;
}

/// The note of a connection, made at the first handshake call (then the watch of an accepted one starts).
connection_note& note_of(SSL* ssl, bool accepting) {
  static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, free_note);
  auto* note = static_cast<connection_note*>(SSL_get_ex_data(ssl, index));
  if (!note) {
    note = new connection_note;
    note->peer = peer_of(ssl);
    SSL_set_ex_data(ssl, index, note);
    if (accepting) watch(*note, SSL_get_fd(ssl));
  }
  return *note;
}

/// One log line per (peer address, reason) every 10 s at most, so a flood does not flood the log.
void log_failure(const SSL* ssl, const std::string& peer, int ssl_error, bool accepting, bool timed_out) {
  const std::string reason = failure_reason(ssl, ssl_error, timed_out);
  const std::string host = peer.substr(0, peer.rfind(':'));
  static std::mutex mu;
  static std::map<std::string, std::pair<std::chrono::steady_clock::time_point, int>> recent;  // -> last log, suppressed
  const auto now = std::chrono::steady_clock::now();
  int suppressed = 0;
  {
    std::lock_guard lock(mu);
    if (recent.size() > 1024) recent.clear();
    auto [it, fresh] = recent.try_emplace(host + " " + reason, now, 0);
    if (!fresh && now - it->second.first < std::chrono::seconds(10)) {
      ++it->second.second;
      return;
    }
    suppressed = it->second.second;
    it->second = {now, 0};
  }
  const std::string more = suppressed > 0 ? " (and " + std::to_string(suppressed) + " more from there since)" : "";
  if (accepting)
    spdlog::warn("node {}: refused a connection to the control port from {}: TLS handshake failed: {}{}", node_label, peer,
                 reason, more);
  else
    spdlog::warn("node {}: TLS handshake with {} failed: {}{}", node_label, peer, reason, more);
}

using handshake_fn = int (*)(SSL*);

int logged_handshake(SSL* ssl, handshake_fn real, bool accepting) {
  connection_note& note = note_of(ssl, accepting);
  ERR_clear_error();
  const int ret = real(ssl);
  if (ret == 1) {
    unwatch(note);
    return ret;
  }
  const int err = SSL_get_error(ssl, ret);
  if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE || note.logged) return ret;
  unwatch(note);
  note.logged = true;
  log_failure(ssl, note.peer, err, accepting, note.timed_out);
  return ret;
}

template <class Fn>
Fn next_symbol(const char* name) {
  auto f = reinterpret_cast<Fn>(::dlsym(RTLD_NEXT, name));
  if (!f) {
    std::fprintf(stderr, "troupe: %s not found in libssl: %s\n", name, ::dlerror());
    std::abort();
  }
  return f;
}

}  // namespace

status check_tls_files(const tls_files& f) {
  auto ca = pem::read_cert(f.ca, "tls.ca");
  TROUPE_TRY(ca);
  auto cert = pem::read_cert(f.cert, "tls.cert");
  TROUPE_TRY(cert);
  auto key = pem::read_key(f.key, "tls.key");
  TROUPE_TRY(key);
  if (X509_check_private_key(cert->get(), key->get()) != 1) {
    ERR_clear_error();
    return make_error(errc::invalid_argument, "tls.key: " + f.key.string() + " is not the key of the certificate " + f.cert.string());
  }
  for (const int purpose : {X509_PURPOSE_SSL_CLIENT, X509_PURPOSE_SSL_SERVER})
    if (const std::string why = verify_under(ca->get(), cert->get(), purpose); !why.empty())
      return make_error(errc::invalid_argument, "tls.cert: " + f.cert.string() + " does not verify under the cluster CA " +
                                                    f.ca.string() + " for TLS " +
                                                    (purpose == X509_PURPOSE_SSL_CLIENT ? "client" : "server") +
                                                    " use: " + why);
  return {};
}

std::string key_mode_warning(const fs::path& key) {
  struct stat st{};
  if (::stat(key.c_str(), &st) != 0 || (st.st_mode & 077) == 0) return "";
  char mode[8];
  std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
  return "tls.key: " + key.string() + " can be read by other users (mode " + mode + "); chmod 600 it";
}

void configure_tls(caf::actor_system_config& cfg, const tls_files& files, const std::string& node_name,
                   std::chrono::milliseconds timeout) {
  node_label = node_name;
  handshake_timeout = timeout;
  // Any of these set makes CAF's module require and verify certificates on both sides.
  cfg.openssl_cafile = files.ca.string();
  cfg.openssl_certificate = files.cert.string();
  cfg.openssl_key = files.key.string();
  cfg.load<caf::openssl::manager>();
}

}  // namespace troupe::cluster

// The wrappers CAF's OpenSSL module calls (see "Wrappers of CAF's OpenSSL calls" above).
extern "C" int SSL_accept(SSL* ssl) {
  using troupe::cluster::handshake_fn;
  static const auto real = troupe::cluster::next_symbol<handshake_fn>("SSL_accept");
  return troupe::cluster::logged_handshake(ssl, real, true);
}

extern "C" int SSL_connect(SSL* ssl) {
  using troupe::cluster::handshake_fn;
  static const auto real = troupe::cluster::next_symbol<handshake_fn>("SSL_connect");
  return troupe::cluster::logged_handshake(ssl, real, false);
}

extern "C" int SSL_read(SSL* ssl, void* buf, int num) {
  static const auto real = troupe::cluster::next_symbol<int (*)(SSL*, void*, int)>("SSL_read");
  ERR_clear_error();
  return real(ssl, buf, num);
}

extern "C" int SSL_write(SSL* ssl, const void* buf, int num) {
  static const auto real = troupe::cluster::next_symbol<int (*)(SSL*, const void*, int)>("SSL_write");
  ERR_clear_error();
  return real(ssl, buf, num);
}
