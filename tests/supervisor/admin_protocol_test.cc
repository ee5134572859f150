// The admin socket's protocol on its own: requests parsed (and refused with
// a reason), responses encoded with every line escaped, and decoded only
// when whole.
#include "gatehouse/supervisor/admin_protocol.h"

#include <gtest/gtest.h>

namespace gatehouse::supervisor::admin {
namespace {

Request parsed(std::string_view line) {
  const auto r = parse_request(line);
  EXPECT_TRUE(std::holds_alternative<Request>(r)) << line << ": " << std::get<std::string>(r);
  return std::holds_alternative<Request>(r) ? std::get<Request>(r) : Request{};
}

std::string refused(std::string_view line) {
  const auto r = parse_request(line);
  EXPECT_TRUE(std::holds_alternative<std::string>(r)) << line;
  return std::holds_alternative<std::string>(r) ? std::get<std::string>(r) : std::string();
}

TEST(AdminRequest, EachCommandWithItsArguments) {
  EXPECT_EQ(parsed("status").command, metrics::kAdminStatus);
  EXPECT_EQ(parsed("  config  ").command, metrics::kAdminConfig);
  EXPECT_EQ(parsed("reload").command, metrics::kAdminReload);
  EXPECT_EQ(parsed("backends").command, metrics::kAdminBackends);
  const Request all = parsed("sessions");
  EXPECT_EQ(all.command, metrics::kAdminSessions);
  EXPECT_FALSE(all.user);
  EXPECT_EQ(parsed("sessions --user 1001").user, 1001);

  const Request by_user = parsed("kick 1001   cheating  detected ");
  EXPECT_EQ(by_user.command, metrics::kAdminKick);
  EXPECT_EQ(by_user.user, 1001);
  EXPECT_EQ(by_user.conn, 0u);
  EXPECT_EQ(by_user.reason, "cheating  detected");
  const Request by_conn = parsed("kick 0x300000007");
  EXPECT_EQ(by_conn.conn, 0x300000007u);
  EXPECT_FALSE(by_conn.user);
  EXPECT_EQ(by_conn.reason, "");

  const Request off = parsed("backend disable 127.0.0.1:50051");
  EXPECT_EQ(off.command, metrics::kAdminBackendDisable);
  EXPECT_EQ(off.name, "127.0.0.1:50051");
  EXPECT_EQ(parsed("backend enable game1").command, metrics::kAdminBackendEnable);
}

TEST(AdminRequest, WhatIsNotARequestSaysWhy) {
  EXPECT_EQ(refused(""), "empty request");
  EXPECT_EQ(refused("frobnicate now"), "unknown command: frobnicate");
  EXPECT_EQ(refused("status please"), "status takes no arguments");
  EXPECT_EQ(refused("sessions --user"), "usage: sessions [--user ID]");
  EXPECT_EQ(refused("sessions --user 12x"), "usage: sessions [--user ID]");
  EXPECT_NE(refused("kick"), "");
  EXPECT_NE(refused("kick bob"), "");
  EXPECT_EQ(refused("kick 0x0"), "kick: 0x0 is not a connection id");
  EXPECT_EQ(refused("kick 0xfoo"), "kick: 0xfoo is not a connection id");
  EXPECT_EQ(refused("kick 1 " + std::string(129, 'r')),
            "kick: the reason is longer than 128 bytes");
  EXPECT_NE(refused("backend pause game1"), "");
  EXPECT_NE(refused("backend disable"), "");
  EXPECT_NE(refused("backend disable a b"), "");
  EXPECT_EQ(refused("backend disable " + std::string(64, 'n')),
            "backend: the name is longer than 63 bytes");
  EXPECT_EQ(refused("status " + std::string(kMaxRequestBytes, ' ')),
            "request longer than 1024 bytes");
}

TEST(AdminResponse, LinesAreEscapedAndCounted) {
  const Response r{true, {"one", "two\nthree \x1b[31m"}};
  const std::string wire = encode(r);
  EXPECT_EQ(wire, "ok 2\none\ntwo\\nthree \\x1b[31m\n");
  const auto back = decode(wire);
  ASSERT_TRUE(back);
  EXPECT_TRUE(back->ok);
  EXPECT_EQ(back->lines, (std::vector<std::string>{"one", "two\\nthree \\x1b[31m"}));

  const auto error = decode(encode(Response::error("no open session of user 7")));
  ASSERT_TRUE(error);
  EXPECT_FALSE(error->ok);
  EXPECT_EQ(error->lines, std::vector<std::string>{"no open session of user 7"});
}

TEST(AdminResponse, OnlyAWholeResponseDecodes) {
  EXPECT_FALSE(decode(""));
  EXPECT_FALSE(decode("ok 2\none\n"));          // cut short
  EXPECT_FALSE(decode("ok 1\none\ntwo\n"));     // more than it said
  EXPECT_FALSE(decode("HTTP/1.1 200 OK\r\n"));  // not this protocol
  EXPECT_FALSE(decode("ok many\n"));
  EXPECT_TRUE(decode("ok 0\n"));
}

TEST(AdminResponse, MessagesSplitIntoLines) {
  EXPECT_EQ(lines_of("a\nb\n"), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(lines_of("a\n\nb"), (std::vector<std::string>{"a", "", "b"}));
  EXPECT_TRUE(lines_of("").empty());
}

TEST(AdminSocket, TheDefaultIsTheUnitsRuntimeDirectory) {
  EXPECT_EQ(default_socket("main"), "/run/gatehouse/main/admin.sock");
}

}  // namespace
}  // namespace gatehouse::supervisor::admin
