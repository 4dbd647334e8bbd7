// The Redis control plane's pure parts (redis_plane.h): the command parser (what it takes, and the
// reason it gives for what it refuses), base64 and JSON strings, and the URL forms. The plane
// against a real redis-server: tests/integration/redis_plane_test.py (daemon.redis_plane).
#include "poolshimd/redis_plane.h"

#include <gtest/gtest.h>

#include <string>

namespace poolshim::daemon {
namespace {

TEST(RedisCommand, ACreateWithEveryField) {
  const redis_command c = parse_redis_command(
      R"({"op": "create", "name": "x", "dtype": "float32", "shape": [2, 3], "device": 0, "pid": 12, "reply_to": "r"})");
  EXPECT_EQ(c.error, "");
  EXPECT_EQ(c.op, "create");
  EXPECT_EQ(c.name, "x");
  EXPECT_EQ(c.dtype, "f32") << "numpy's names are taken";
  EXPECT_EQ(c.shape, (std::vector<std::uint64_t>{2, 3}));
  EXPECT_EQ(c.device, 0);
  EXPECT_EQ(c.pid, 12);
  EXPECT_EQ(c.reply_to, "r");
  EXPECT_EQ(parse_redis_command(R"({"op":"create","name":"x","dtype":"f16","shape":[],"device":"cuda:1"})").device, 1);
  EXPECT_EQ(parse_redis_command(R"({"op":"get","name":"x"})").error, "");
}

TEST(RedisCommand, RefusalsSayWhyAndKeepReplyTo) {
  struct bad {
    const char* json;
    const char* says;
  } cases[] = {
      {"", "not a JSON object"},
      {"[1]", "not a JSON object"},
      {R"({"op": "get", "name": "x", "reply_to": "r", "shpae": [1]})", "unknown key 'shpae'"},
      {R"({"op": "get", "name": "x", "name": "y", "reply_to": "r"})", "twice"},
      {R"({"op": "drop", "name": "x", "reply_to": "r"})", "op:"},
      {R"({"op": "get", "reply_to": "r"})", "no name"},
      {R"({"op": "create", "name": "x", "dtype": "f32", "reply_to": "r"})", "no shape"},
      {R"({"op": "create", "name": "x", "shape": [1], "reply_to": "r"})", "no dtype"},
      {R"({"op": "create", "name": "x", "dtype": "f32", "shape": [-1], "reply_to": "r"})", "negative"},
      {R"({"op": "create", "name": "x", "dtype": "f32", "shape": [1,1,1,1,1,1,1,1,1], "reply_to": "r"})",
       "8 dimensions"},
      {R"({"op": "create", "name": "x", "dtype": "f32", "shape": [1.5], "reply_to": "r"})", "integer"},
      {R"({"op": "create", "name": "x", "dtype": "f32", "shape": [1], "device": "tpu:0", "reply_to": "r"})", "device"},
      {R"({"op": "get", "name": "x", "device": 0, "reply_to": "r"})", "belong to create"},
      {R"({"op": "get", "name": "x", "pid": -4, "reply_to": "r"})", "pid"},
      {R"({"op": "get", "name": "x", "reply_to": "r"} trailing)", "after the object"},
      {R"({"op": "get", "name": "x\u00e9", "reply_to": "r"})", "ASCII"},
  };
  for (const bad& b : cases) {
    const redis_command c = parse_redis_command(b.json);
    EXPECT_NE(c.error.find(b.says), std::string::npos) << b.json << " -> " << c.error;
    // An object that parses is answered whatever its keys say (it has a reply_to).
    const bool well_formed = std::string(b.json).find("\"r\"}") != std::string::npos &&
                             c.error.find("twice") == std::string::npos && c.error.find("ASCII") == std::string::npos &&
                             c.error.find("integer") == std::string::npos;
    if (well_formed) {
      EXPECT_EQ(c.reply_to, "r") << "a refused command is still answered: " << b.json;
    }
  }
}

TEST(RedisCommand, Base64AndJsonStrings) {
  EXPECT_EQ(base64("", 0), "");
  EXPECT_EQ(base64("f", 1), "Zg==");
  EXPECT_EQ(base64("fo", 2), "Zm8=");
  EXPECT_EQ(base64("foo", 3), "Zm9v");
  const unsigned char all[3] = {0xff, 0x00, 0xfe};
  EXPECT_EQ(base64(all, 3), "/wD+");
  EXPECT_EQ(json_string("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
}

TEST(RedisUrl, TheTwoFormsAndBadOnes) {
  redis_url u;
  std::string why;
  ASSERT_TRUE(parse_redis_url("redis://db.local:6380/2", &u, &why)) << why;
  EXPECT_EQ(u.host, "db.local");
  EXPECT_EQ(u.port, 6380);
  EXPECT_EQ(u.db, 2);
  ASSERT_TRUE(parse_redis_url("redis://", &u, &why));
  EXPECT_EQ(u.host, "127.0.0.1");
  EXPECT_EQ(u.port, 6379);
  ASSERT_TRUE(parse_redis_url("unix:///run/redis.sock?db=3", &u, &why));
  EXPECT_EQ(u.unix_path, "/run/redis.sock");
  EXPECT_EQ(u.db, 3);
  for (const char* bad : {"localhost:6379", "redis://h:0", "redis://h:70000", "redis://user:pw@h", "unix://rel",
                          "redis://h/x", "http://h"}) {
    EXPECT_FALSE(parse_redis_url(bad, &u, &why)) << bad;
    EXPECT_FALSE(why.empty());
  }
}

}  // namespace
}  // namespace poolshim::daemon
