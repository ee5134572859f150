#include "gatehouse/supervisor/keygen.h"

#include <sodium.h>

#include <stdexcept>

#include "gatehouse/crypto/gateway_key_file.h"

namespace gatehouse::supervisor {

KeygenResult keygen_command(const std::vector<std::string>& args) {
  if (args.size() != 2 || args[0] != "--out" || args[1].empty()) {
    return {2,
            "usage: gatehouse keygen --out FILE\n"
            "  writes a new gateway private key to FILE (mode 0600; the gateway's gateway-key)\n"
            "  and its public key to FILE.pub (what clients pin with --gateway-key)\n"};
  }
  const std::string& path = args[1];
  modern::KeyPair pair = modern::generate_key_pair();
  try {
    modern::write_key_files(path, pair);
  } catch (const std::runtime_error& e) {
    sodium_memzero(pair.secret_key.data(), pair.secret_key.size());
    return {1, std::string("gatehouse keygen: ") + e.what() + "\n"};
  }
  sodium_memzero(pair.secret_key.data(), pair.secret_key.size());
  return {0, "wrote " + path + " (private key, mode 0600: gateway-key = " + path + ")\nand " +
                 path + ".pub (public key: gatehouse-client --gateway-key " + path + ".pub)\n" +
                 "public key " + modern::to_hex(pair.public_key) + "\nkey id " +
                 modern::to_hex(modern::key_id_of(pair.public_key)) + "\n"};
}

}  // namespace gatehouse::supervisor
