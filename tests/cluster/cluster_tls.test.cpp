// Mutual TLS on the nodes' control port, with real `troupe node` processes on loopback: nodes with
// certificates of the cluster CA serve; a node of another CA, a client without a certificate, garbage
// and a CAF frame announcing 4 GiB are refused before CAF parses a frame, logged, and cost the node
// nothing, while it keeps serving.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <random>

#include "tests/cluster/cluster_fixture.hpp"
#include "tests/tools/hostile_peer.hpp"

namespace troupe::test {
namespace {

namespace fs = std::filesystem;

/// A TCP connection to host:port (an IPv4 address), or -1 with errno set. Reads time out after 3 s.
int tcp_connect(const std::string& host, int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  ::inet_pton(AF_INET, host.c_str(), &a.sin_addr);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    const int saved = errno;
    ::close(fd);
    errno = saved;
    return -1;
  }
  timeval tv{3, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return fd;
}

/// What a TLS client saw of a control port: the handshake completed on its side, and the node then
/// sent bytes (CAF's protocol greets an accepted peer first), i.e. the node let it in.
struct tls_probe {
  bool handshake = false;
  bool let_in = false;
  double handshake_ms = 0;
};

/// Connects to 127.0.0.1:port with TLS, presenting cert/key when given and verifying the node with ca.
tls_probe probe(int port, const fs::path& ca, const fs::path& cert = {}, const fs::path& key = {}) {
  tls_probe out;
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  SSL_CTX_load_verify_locations(ctx, ca.c_str(), nullptr);
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  if (!cert.empty()) {
    SSL_CTX_use_certificate_chain_file(ctx, cert.c_str());
    SSL_CTX_use_PrivateKey_file(ctx, key.c_str(), SSL_FILETYPE_PEM);
  }
  const int fd = tcp_connect("127.0.0.1", port);
  SSL* ssl = SSL_new(ctx);
  SSL_set_fd(ssl, fd);
  const auto t0 = std::chrono::steady_clock::now();
  out.handshake = fd >= 0 && SSL_connect(ssl) == 1;
  out.handshake_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  char byte = 0;
  out.let_in = out.handshake && SSL_read(ssl, &byte, 1) == 1;  // with TLS 1.3 a refusal comes here
  SSL_free(ssl);
  SSL_CTX_free(ctx);
  ERR_clear_error();
  if (fd >= 0) ::close(fd);
  return out;
}

/// The `port:` of node `name` in a config text.
int port_of(const std::string& yaml, const std::string& name) {
  const std::regex re("name: " + name + R"(, host: [0-9.]+, port: ([0-9]+))");
  std::smatch m;
  return std::regex_search(yaml, m, re) ? std::stoi(m[1]) : 0;
}

/// A head with the gateway and a worker with one replica, over TLS (plus more nodes and replicas, and
/// more `tls` keys).
std::string two_node_config(const std::string& more_nodes = "", const std::string& more_replicas = "",
                            const std::string& more_tls = "") {
  return on_free_ports(
      "cluster: tls\n"
      "nodes:\n"
      "  - {name: head, host: 127.0.0.1, port: 7480, http_port: 8080}\n"
      "  - {name: w1, host: 127.0.0.1, port: 7481, threads: 1}\n" +
      more_nodes +
      "models:\n"
      "  - name: stories260K\n"
      "    path: stories260K/stories260K.gguf\n"
      "    replicas: [{node: w1}" + more_replicas + "]\n"
      "tls: {dir: certs" + more_tls + "}\n");
}

class ClusterTls : public ClusterNodes {
 protected:
  /// Writes text as dir_/sub/c.yaml with its own CA and node files beside it; the config's path.
  std::string write_config(const std::string& text, const std::string& sub = ".") {
    fs::create_directories(dir_ / sub);
    const fs::path p = dir_ / sub / "c.yaml";
    std::ofstream(p) << text;
    make_certs(p);
    return p.string();
  }
  /// The stories260K replica of two_node_config answers through the gateway.
  bool serves(int port) {
    return text_of(complete(port, "stories260K", "Once upon a time", 8)).find("there was a little girl") != std::string::npos &&
           replica_metric(port, "troupe_replica_up", "stories260K", "stories260K/0") == 1;
  }
};

TEST_F(ClusterTls, NodesOfTheClusterCaServeWhileANodeOfAnotherCaIsRefusedBothWaysAndLogged) {
  // `rogue` runs the scheduler of a second replica whose shard is on w1: it must connect to w1, and
  // the gateway must connect to it. It reads the same config text (so the handshake would accept it),
  // but its certificate comes from another CA.
  const std::string placed = two_node_config("  - {name: rogue, host: 127.0.0.1, port: 7482, threads: 1}\n",
                                             ", {scheduler: rogue, shards: [w1]}");
  const std::string cfg = write_config(placed);
  const std::string rogue_cfg = write_config(placed, "rogue");
  const int port = http_port_of(placed, "head");
  start(cfg, "head");
  start(cfg, "w1");
  start(rogue_cfg, "rogue");
  ASSERT_TRUE(eventually([&] { return serves(port); }, 60s)) << logs();

  // w1 refuses the rogue scheduler's connection, and the rogue refuses the gateway's; both logged.
  // (Each side's client sees the other's certificate first and aborts; the server logs the alert.)
  EXPECT_TRUE(eventually([&] { return nodes_["w1"]->log().find("refused a connection to the control port from 127.0.0.1:") != std::string::npos; }, 20s))
      << logs();
  const std::string rogue_at = "TLS handshake with 127.0.0.1:" + std::to_string(port_of(placed, "rogue")) +
                               " failed: peer certificate: self-signed certificate in certificate chain";
  EXPECT_TRUE(eventually([&] { return nodes_["head"]->log().find(rogue_at) != std::string::npos; }, 20s)) << logs();
  EXPECT_EQ(logs().find("runs another cluster config"), std::string::npos) << "refused by TLS, before the handshake";
  EXPECT_NE(replica_metric(port, "troupe_replica_up", "stories260K", "stories260K/1"), 1);

  // A bare TLS client: let in with a certificate of the cluster CA, refused without one or with the rogue's.
  const int head_port = port_of(placed, "head");
  const fs::path certs = dir_ / "certs", other = dir_ / "rogue/certs";
  EXPECT_TRUE(probe(head_port, certs / "ca.pem", certs / "w1.pem", certs / "w1.key").let_in);
  EXPECT_FALSE(probe(head_port, certs / "ca.pem").let_in);
  EXPECT_FALSE(probe(head_port, certs / "ca.pem", other / "rogue.pem", other / "rogue.key").let_in);
  EXPECT_TRUE(eventually([&] { return nodes_["head"]->log().find("peer did not return a certificate") != std::string::npos; }, 5s))
      << logs();
  EXPECT_TRUE(eventually([&] { return nodes_["head"]->log().find("peer certificate: unable to get local issuer certificate") != std::string::npos; }, 5s))
      << logs();
  EXPECT_TRUE(serves(port)) << logs();

  // The cost of TLS on a connection: the client's handshake time, against a plain TCP connect.
  std::vector<double> tls_ms, tcp_ms;
  for (int i = 0; i < 20; ++i) {
    tls_ms.push_back(probe(head_port, certs / "ca.pem", certs / "w1.pem", certs / "w1.key").handshake_ms);
    const auto t0 = std::chrono::steady_clock::now();
    const int fd = tcp_connect("127.0.0.1", head_port);
    tcp_ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    ::close(fd);
  }
  std::sort(tls_ms.begin(), tls_ms.end());
  std::sort(tcp_ms.begin(), tcp_ms.end());
  std::printf("control port on loopback: TLS handshake median %.2f ms (max %.2f), TCP connect median %.3f ms\n", tls_ms[10],
              tls_ms.back(), tcp_ms[10]);
}

TEST_F(ClusterTls, GarbageAFourGibFrameAndSilenceAtTheControlPortAreRefusedLoggedAndCostNoMemory) {
  const std::string text = two_node_config("", "", ", handshake_timeout_ms: 1500");
  const std::string cfg = write_config(text);
  const int port = http_port_of(text, "head");
  start(cfg, "head");
  start(cfg, "w1");
  ASSERT_TRUE(eventually([&] { return serves(port); }, 60s)) << logs();

  std::mt19937 rng(11);
  for (const char* target : {"head", "w1"}) {
    const pid_t pid = nodes_[target]->pid();
    const int control = port_of(text, target);
    const double before = rss_mib(pid);
    // A CAF (BASP) header as an unauthenticated client would send it: client handshake, payload 4 GiB - 1.
    // Without TLS the node reserved the payload at once (RSS +1.2 GiB in the first second).
    std::string frame(32, '\0');
    frame[0] = 1;
    frame[4] = frame[5] = frame[6] = frame[7] = '\xff';
    std::string garbage(8192, '\0');
    for (auto& c : garbage) c = static_cast<char>(rng());
    // Silent connections: CAF would keep them (and an SSL context each) as long as the client does.
    std::vector<int> fds;
    for (int i = 0; i < 12; ++i) {
      const int fd = tcp_connect("127.0.0.1", control);
      ASSERT_GE(fd, 0) << target;
      const std::string& bytes = i % 3 == 0 ? frame : i % 3 == 1 ? garbage : std::string();
      EXPECT_EQ(::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL), static_cast<ssize_t>(bytes.size()));
      fds.push_back(fd);
    }
    // The node closes every one of them (read returns 0 or a reset; never the 3 s timeout).
    for (int fd : fds) {
      char buf[4096];
      ssize_t n;
      while ((n = ::read(fd, buf, sizeof buf)) > 0) {
      }
      EXPECT_TRUE(n == 0 || errno == ECONNRESET) << target << ": " << std::strerror(errno);
      ::close(fd);
    }
    std::this_thread::sleep_for(1s);
    const double after = rss_mib(pid);
    std::printf("%s: RSS %.1f MiB before 12 hostile connections, %.1f MiB after\n", target, before, after);
    EXPECT_LT(after - before, 20.0) << target;
    EXPECT_NE(nodes_[target]->log().find("refused a connection to the control port from 127.0.0.1:"), std::string::npos) << logs();
    EXPECT_NE(nodes_[target]->log().find("TLS handshake failed: no TLS handshake within 1500 ms"), std::string::npos) << logs();
  }
  // The links between the nodes outlived the refused connections: the replica never left routing.
  EXPECT_TRUE(serves(port)) << logs();
  EXPECT_EQ(nodes_["head"]->log().find("went down"), std::string::npos) << logs();
}

TEST_F(ClusterTls, TheControlPortListensOnTheConfiguredHostOnly) {
  const std::string cfg = config("one-node.yaml");
  const int http = http_port_of(yaml_, "head");
  start(cfg, "head");
  ASSERT_TRUE(ready(http)) << logs();
  std::smatch m;  // one-node.yaml has a key per line
  ASSERT_TRUE(std::regex_search(yaml_, m, std::regex(R"(\n    port: ([0-9]+))"))) << yaml_;
  const int port = std::stoi(m[1]);
  const int fd = tcp_connect("127.0.0.1", port);
  EXPECT_GE(fd, 0);
  ::close(fd);
  // 127.0.0.2 is this machine too (all of 127/8 is loopback), but not the address the config names.
  EXPECT_EQ(tcp_connect("127.0.0.2", port), -1);
  EXPECT_EQ(errno, ECONNREFUSED);
}

TEST_F(ClusterTls, WithoutTlsANodeStartsOnLoopbackOnlyAndSaysItsPortIsOpen) {
  std::string text = two_node_config();
  text.erase(text.find("tls:"));
  const std::string cfg = write_config(text);
  const int port = http_port_of(text, "head");
  start(cfg, "head");
  start(cfg, "w1");
  ASSERT_TRUE(eventually([&] { return serves(port); }, 60s)) << logs();
  EXPECT_NE(nodes_["head"]->log().find("is not authenticated (the config has no `tls`"), std::string::npos) << logs();

  std::string remote = text;
  remote.replace(remote.find("host: 127.0.0.1, port"), 15, "host: 10.1.2.3");
  const fs::path bad = dir_ / "remote.yaml";
  std::ofstream(bad) << remote;
  const auto r = run(troupe_bin() + " node --config " + bad.string() + " --name w1 --check");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("tls: is required: node 'head' listens on 10.1.2.3"), std::string::npos) << r.err;
}

TEST_F(ClusterTls, TroupeCertsWritesIntoTheConfigsTlsDirAndNamesWhatIsMissing) {
  const std::string cfg = write_config(two_node_config());  // runs `troupe certs --config` (no --out)
  for (const char* f : {"ca.pem", "ca.key", "head.pem", "head.key", "w1.pem", "w1.key"}) EXPECT_TRUE(fs::exists(dir_ / "certs" / f)) << f;
  const auto again = run(troupe_bin() + " certs --config " + cfg + " --nodes w1");
  EXPECT_EQ(again.exit_code, 0) << again.err;
  EXPECT_NE(again.out.find("existing CA kept"), std::string::npos) << again.out;
  EXPECT_NE(again.out.find("w1.key: kept (valid under the CA)"), std::string::npos) << again.out;
  const auto nobody = run(troupe_bin() + " certs --config " + cfg + " --nodes w1,nobody");
  EXPECT_EQ(nobody.exit_code, 1);
  EXPECT_NE(nobody.err.find("no node named 'nobody' (nodes: head, w1)"), std::string::npos) << nobody.err;
  const auto no_out = run(troupe_bin() + " certs --nodes a,b");
  EXPECT_EQ(no_out.exit_code, 1);
  EXPECT_NE(no_out.err.find("say where the files go with --out DIR"), std::string::npos) << no_out.err;
}

}  // namespace
}  // namespace troupe::test
