#pragma once
// `troupe certs`: a cluster CA and one certificate and key per node, for the nodes' mutual TLS
// (cluster/tls.hpp). Files in the output directory, named as a config's `tls: {dir: DIR}` expects:
//
//   ca.pem          the CA's certificate: every node trusts it (copy it to every node)
//   ca.key          the CA's key (0600): signs new nodes; keep it off the nodes
//   NODE.pem        a node's certificate: CN = NODE, subjectAltName = its host, for TLS client and server
//   NODE.key        a node's key (0600): copy it to that node only
//
// Keys are ECDSA P-256, signatures SHA-256. A directory that already holds ca.pem and ca.key keeps
// its CA; a node whose files already verify under it keeps them; any other node gets new ones.

#include <filesystem>
#include <string>
#include <vector>

#include "runtime/core/error.hpp"

namespace troupe::cluster {

struct cert_subject {
  std::string node;  ///< the node's name: the certificate's CN and the files' stem
  std::string host;  ///< its address (IP or DNS name) as subjectAltName; "" none
};

struct certs_request {
  std::filesystem::path out;          ///< created (mode 0700) when missing
  std::string cluster = "troupe";     ///< in the CA's and the nodes' subject
  std::vector<cert_subject> nodes;
  int days = 730;                     ///< validity of new node certificates (a new CA gets 10 years, or days if longer)
};

struct certs_report {
  bool made_ca = false;
  std::vector<std::string> made;  ///< nodes given a new certificate and key
  std::vector<std::string> kept;  ///< nodes whose files verified under the CA and were left alone
};

expected<certs_report> make_cluster_certs(const certs_request& req);

}  // namespace troupe::cluster
