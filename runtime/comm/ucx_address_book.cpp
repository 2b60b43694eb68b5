// The directory address book of ucx_communicator.hpp: it needs no UCX, so it is built everywhere.
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "runtime/comm/ucx_communicator.hpp"

namespace troupe {
namespace {

class directory_address_book final : public ucx_address_book {
 public:
  explicit directory_address_book(std::filesystem::path dir) : dir_(std::move(dir)) {}

  status publish(int rank, const std::string& address) override {
    const auto final_path = dir_ / std::to_string(rank), aside = dir_ / (std::to_string(rank) + ".tmp");
    std::error_code ec;
    std::filesystem::create_directories(dir_, ec);
    {
      std::ofstream out(aside, std::ios::binary | std::ios::trunc);
      out.write(address.data(), static_cast<std::streamsize>(address.size()));
      if (!out) return make_error(errc::io_error, "ucx: cannot write the address file " + aside.string());
    }
    // A reader sees the old file or the new one, never half of one.
    std::filesystem::rename(aside, final_path, ec);
    if (ec) return make_error(errc::io_error, "ucx: cannot write the address file " + final_path.string() + ": " + ec.message());
    return {};
  }

  expected<std::string> fetch(int rank) override {
    const auto p = dir_ / std::to_string(rank);
    std::ifstream in(p, std::ios::binary);
    if (!in) return make_error(errc::not_found, "no address file " + p.string() + " yet");
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

 private:
  std::filesystem::path dir_;
};

}  // namespace

std::shared_ptr<ucx_address_book> make_directory_address_book(std::string dir) {
  return std::make_shared<directory_address_book>(std::move(dir));
}

}  // namespace troupe
