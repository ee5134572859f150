// Login providers: the token table and accept-any's stable ids.
#include "gatehouse/worker/login.h"

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

namespace gatehouse::worker {
namespace {

protocol::LoginRequest request(std::string_view udid, std::string_view token) {
  protocol::LoginRequest r;
  r.open_udid = udid;
  r.client_certificate = token;
  return r;
}

std::string write_file(const std::string& text) {
  const auto path = std::filesystem::temp_directory_path() /
                    ("gatehouse-tokens-" + std::to_string(::getpid()) + "-" +
                     std::to_string(std::hash<std::string>{}(text)));
  std::ofstream(path) << text;
  return path.string();
}

TEST(AcceptAnyLogin, SameDeviceSameIdOthersDifferNeverOne) {
  AcceptAnyLogin login;
  const auto a = login.authenticate(request("device-a", ""));
  const auto b = login.authenticate(request("device-b", ""));
  ASSERT_TRUE(a && b);
  EXPECT_EQ(login.authenticate(request("device-a", "x")), a);
  EXPECT_NE(a, b);
  EXPECT_GE(*a, 1);
  EXPECT_FALSE(login.authenticate(request("", "")).has_value()) << "no device, no id";
}

TEST(StaticTokenLogin, FileMapsTokensToIds) {
  const auto path = write_file("# players\ntok-a 42\n\n  tok-b   7  \n");
  auto login = StaticTokenLogin::from_file(path);
  EXPECT_EQ(login.authenticate(request("x", "tok-a")), 42);
  EXPECT_EQ(login.authenticate(request("x", "tok-b")), 7);
  EXPECT_FALSE(login.authenticate(request("x", "tok-c")).has_value());
  EXPECT_FALSE(login.authenticate(request("x", "")).has_value());
  std::filesystem::remove(path);
}

TEST(StaticTokenLogin, BadLinesNameTheFileAndLine) {
  for (const char* bad : {"tok 0\n", "tok\n", "tok 5 extra\n", "tok 2147483648\n", "tok x\n"}) {
    const auto path = write_file(std::string("ok 1\n") + bad);
    try {
      StaticTokenLogin::from_file(path);
      ADD_FAILURE() << "accepted: " << bad;
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find(path + ":2"), std::string::npos) << e.what();
    }
    std::filesystem::remove(path);
  }
  EXPECT_THROW(StaticTokenLogin::from_file("/nonexistent/tokens"), std::runtime_error);
}

}  // namespace
}  // namespace gatehouse::worker
