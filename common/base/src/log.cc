#include "gatehouse/base/log.h"

#include <spdlog/sinks/stdout_color_sinks.h>

namespace gatehouse {

void init_logging(const std::string& process, spdlog::level::level_enum level) {
  auto logger = spdlog::stderr_color_mt(process);
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%-5l%$ [" + process + "] %v");
  logger->set_level(level);
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(logger);
}

}  // namespace gatehouse
