#pragma once
// Mutual TLS on the nodes' control port, through CAF's OpenSSL module (libcaf_openssl): a node
// publishes its node actor with caf::openssl::publish and connects with caf::openssl::remote_actor.
// With a certificate configured, CAF's module verifies the peer on both sides
// (SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT against the cluster CA) and passes no byte to
// CAF's protocol layer (BASP) before the handshake has succeeded: a client without a certificate of
// the cluster CA never gets a frame parsed.
//
// CAF builds a fresh SSL context from the files for every connection (so replaced files take effect
// on the next connection), and raises an error in its I/O thread when they cannot be read: check_tls_files
// reads them once at start so that a bad file is an error naming it, not a crash later.
//
// troupe wraps the OpenSSL calls of CAF's module (tls.cpp): CAF leaves a failed call's error in the
// I/O thread's OpenSSL error queue, where it made the next connection of that thread fail (one garbage
// connection dropped a node's healthy links), and its module logs nothing in a build without CAF
// logging (Debian's): the wrappers clear the queue before each call and log a refused peer with its
// address and OpenSSL's reason, and shut down a connection whose handshake does not complete within
// tls.handshake_timeout_ms (CAF has no such timeout).

#include <caf/actor_system_config.hpp>

#include <chrono>
#include <string>

#include "cluster/cluster_config.hpp"
#include "runtime/core/error.hpp"

namespace troupe::cluster {

/// Reads the CA, the certificate and the key with OpenSSL: each must parse, the key must be the
/// certificate's (unencrypted), and the certificate must verify under the CA for both TLS client and
/// server use (not expired, not another CA's). Errors name the key (tls.ca, tls.cert, tls.key) and the file.
status check_tls_files(const tls_files& files);

/// "" or a warning when the key file can be read by group or others.
std::string key_mode_warning(const std::filesystem::path& key);

/// Loads CAF's OpenSSL module (after the middleman) with the node's files; every TLS handshake that
/// fails from then on is logged as node `node_name`'s, and an accepted connection without a completed
/// handshake after handshake_timeout is shut down. Call before the actor system is created.
void configure_tls(caf::actor_system_config& cfg, const tls_files& files, const std::string& node_name,
                   std::chrono::milliseconds handshake_timeout);

}  // namespace troupe::cluster
