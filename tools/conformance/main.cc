// gatehouse-conformance: judges a game service on the batched contract
// (docs/batch-contract.md) by driving it as the gateway's backend-bridge
// does. One line per check, a summary; exit status 0 when every check
// passed, 1 when one failed, 2 on a usage error.
#include <cstdint>
#include <iostream>
#include <string>
#include <vector>

#include <boost/program_options.hpp>

#include "gatehouse/conformance/checks.h"

namespace {

namespace po = boost::program_options;
namespace conformance = gatehouse::conformance;

std::string check_list() {
  std::string out = "checks (in order):\n";
  for (const conformance::CheckInfo& c : conformance::checks()) {
    out += "  " + std::string(c.name) + ": " + c.rule + "\n";
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  conformance::Options options;
  std::vector<std::string> only;
  std::int64_t patience_s = 30;
  po::options_description description(
      "gatehouse-conformance [options] HOST:PORT: checks a game service against the batched "
      "contract (docs/batch-contract.md); the service must answer the demo protocol's echo "
      "(1001 -> 1002, same body) and kick-me (1005 -> KICK)");
  description.add_options()("help", "show this help and the checks")(
      "sessions", po::value(&options.sessions)->default_value(options.sessions),
      "sessions at once in the 'sessions' check")(
      "patience", po::value(&patience_s)->default_value(patience_s),
      "seconds any one wait for an expected event lasts before the check fails")(
      "check", po::value(&only)->composing(),
      "run only this check (repeatable; --help lists them)");
  po::options_description hidden;
  hidden.add_options()("target", po::value(&options.target));
  po::options_description all;
  all.add(description).add(hidden);
  po::positional_options_description positional;
  positional.add("target", 1);
  try {
    po::variables_map vm;
    po::store(po::command_line_parser(argc, argv).options(all).positional(positional).run(), vm);
    po::notify(vm);
    if (vm.count("help") != 0) {
      std::cout << description << '\n' << check_list();
      return 0;
    }
    if (options.target.empty()) throw po::error("HOST:PORT is missing");
    if (options.sessions == 0 || options.sessions > 1'000'000) {
      throw po::error("--sessions must be 1..1000000");
    }
    if (patience_s < 1 || patience_s > 3600) throw po::error("--patience must be 1..3600");
    for (const std::string& name : only) {
      bool known = false;
      for (const conformance::CheckInfo& c : conformance::checks()) known |= name == c.name;
      if (!known) throw po::error("no check named '" + name + "'");
    }
  } catch (const po::error& e) {
    std::cerr << "gatehouse-conformance: " << e.what() << "\n"
              << description << '\n'
              << check_list();
    return 2;
  }
  options.patience = std::chrono::seconds(patience_s);

  const std::vector<conformance::Result> results = conformance::run(options, only, std::cout);
  std::size_t passed = 0;
  for (const conformance::Result& r : results) passed += r.passed ? 1 : 0;
  std::cout << "conformance: " << passed << " passed, " << results.size() - passed << " failed ("
            << options.target << ")" << std::endl;
  return passed == results.size() ? 0 : 1;
}
