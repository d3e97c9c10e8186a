// CurveZMQ keys written by `sensorfuse keys generate DIR` (ZeroMQ certificate files):
// a subscriber needs the server's public key (DIR/server.key) and the client key pair
// (DIR/client.key_secret), all as 40-character Z85 text.
#pragma once

#include <fstream>
#include <stdexcept>
#include <string>
#include <string_view>

namespace sensorfuse {

struct CurveKeys {
  std::string server_public;
  std::string client_public;
  std::string client_secret;
};

namespace detail {

// The quoted value of `name = "..."` in a ZeroMQ certificate file, or "" when absent.
inline std::string certificate_value(const std::string& path, std::string_view name) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("sensorfuse: cannot read " + path);
  std::string line;
  while (std::getline(in, line)) {
    const auto start = line.find_first_not_of(" \t");
    if (start == std::string::npos || line.compare(start, name.size(), name) != 0) continue;
    const auto open = line.find('"', start + name.size());
    const auto close = open == std::string::npos ? open : line.find('"', open + 1);
    if (close == std::string::npos) break;
    std::string value = line.substr(open + 1, close - open - 1);
    if (value.size() != 40) throw std::runtime_error("sensorfuse: " + path + ": " + std::string(name) + " is not 40 Z85 characters");
    return value;
  }
  throw std::runtime_error("sensorfuse: " + path + " has no " + std::string(name));
}

}  // namespace detail

/// Reads DIR/server.key and DIR/client.key_secret; throws std::runtime_error naming the file.
inline CurveKeys load_curve_keys(const std::string& dir) {
  const std::string client = dir + "/client.key_secret";
  return CurveKeys{detail::certificate_value(dir + "/server.key", "public-key"),
                   detail::certificate_value(client, "public-key"),
                   detail::certificate_value(client, "secret-key")};
}

}  // namespace sensorfuse
