#include "gatehouse/supervisor/token_commands.h"

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>

#include <boost/program_options.hpp>

#include "gatehouse/token/key_files.h"
#include "gatehouse/token/signed_token.h"
#include "gatehouse/token/token_file.h"

namespace gatehouse::supervisor {
namespace {
namespace po = boost::program_options;

po::variables_map parse(int argc, const char* const* argv, const po::options_description& options,
                        const po::positional_options_description& positional = {}) {
  po::variables_map vm;
  po::store(
      po::command_line_parser(argc - 1, argv + 1).options(options).positional(positional).run(),
      vm);
  if (vm.count("help") == 0) po::notify(vm);  // --help needs none of the required options
  return vm;
}

int keygen(int argc, const char* const* argv) {
  po::options_description options(
      "Usage: gatehouse token-keygen --out STEM\n\n"
      "Writes a new Ed25519 login token key pair: STEM.key (secret: mints tokens; keep it\n"
      "with the login service, mode 0600) and STEM.pub (for login = signed:STEM.pub).\n"
      "Never replaces a file");
  options.add_options()("help,h", "print this help")("out", po::value<std::string>()->required(),
                                                     "path of the two files, without suffix");
  const auto vm = parse(argc, argv, options);
  if (vm.count("help") != 0) {
    std::cout << options << "\n";
    return 0;
  }
  const std::string stem = vm["out"].as<std::string>();
  const token::SecretKey key = token::SecretKey::generate();
  token::write_key_pair(stem, key);
  std::printf("%s.key (secret) and %s.pub written; key id %08x\n", stem.c_str(), stem.c_str(),
              key.public_key().id());
  return 0;
}

int mint(int argc, const char* const* argv) {
  po::options_description options(
      "Usage: gatehouse token --key STEM.key --uid N [--ttl SECONDS] [--audience NAME]\n\n"
      "Prints a signed login token for user N (docs/login.md), to send as the login's\n"
      "client_certificate (gatehouse-client --token)");
  options.add_options()("help,h", "print this help")("key", po::value<std::string>()->required(),
                                                     "secret key file (gatehouse token-keygen)")(
      "uid", po::value<std::int64_t>()->required(), "user id, 1..2147483647")(
      "ttl", po::value<std::int64_t>()->default_value(3600), "seconds the token is valid")(
      "audience", po::value<std::string>()->default_value(""),
      "the gateway's login-audience (default: none)")(
      "now", po::value<std::int64_t>(),
      "unix time to count the ttl from instead of the clock (test vectors)");
  const auto vm = parse(argc, argv, options);
  if (vm.count("help") != 0) {
    std::cout << options << "\n";
    return 0;
  }
  const auto uid = vm["uid"].as<std::int64_t>();
  const auto ttl = vm["ttl"].as<std::int64_t>();
  if (uid <= 0 || uid > 0x7FFF'FFFF) throw std::invalid_argument("--uid must be 1..2147483647");
  if (ttl <= 0) throw std::invalid_argument("--ttl must be positive");
  const std::int64_t now = vm.count("now") != 0
                               ? vm["now"].as<std::int64_t>()
                               : std::chrono::duration_cast<std::chrono::seconds>(
                                     std::chrono::system_clock::now().time_since_epoch())
                                     .count();
  const token::SecretKey key = token::read_secret_key(vm["key"].as<std::string>());
  std::printf("%s\n", token::mint(key, static_cast<std::int32_t>(uid), now + ttl,
                                  vm["audience"].as<std::string>())
                          .c_str());
  return 0;
}

int hash(int argc, const char* const* argv) {
  po::options_description options(
      "Usage: gatehouse token-hash FILE > HASHED\n\n"
      "Prints a token table ('<token> <user id>' lines) with each token replaced by its\n"
      "hash, as login = tokens:FILE reads it (lines already hashed and comments kept)");
  options.add_options()("help,h", "print this help")("file", po::value<std::string>()->required(),
                                                     "the plaintext table");
  po::positional_options_description positional;
  positional.add("file", 1);
  const auto vm = parse(argc, argv, options, positional);
  if (vm.count("help") != 0) {
    std::cout << options << "\n";
    return 0;
  }
  const std::string path = vm["file"].as<std::string>();
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::ostringstream out;  // all or nothing: a bad line prints no half table
  token::hash_token_file(in, out);
  std::cout << out.str();
  return 0;
}

}  // namespace

std::optional<int> run_token_command(int argc, const char* const* argv) {
  if (argc < 2) return std::nullopt;
  const std::string_view command = argv[1];
  int (*run)(int, const char* const*) = nullptr;
  if (command == "token") run = mint;
  if (command == "token-keygen") run = keygen;
  if (command == "token-hash") run = hash;
  if (run == nullptr) return std::nullopt;
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gatehouse %s: %s\n", argv[1], e.what());
    return 2;
  }
}

}  // namespace gatehouse::supervisor
