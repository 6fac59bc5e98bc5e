#include "topology/topology.h"

#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace tandem {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

std::vector<std::string> Strings(const TopologyParseResult& result) {
  std::vector<std::string> out;
  for (const Diagnostic& d : result.diagnostics) out.push_back(d.ToString());
  return out;
}

// Replaces the first occurrence of `from` (which must be there) by `to`.
std::string Edit(std::string text, std::string_view from, std::string_view to) {
  size_t at = text.find(from);
  EXPECT_NE(at, std::string::npos) << "fixture does not contain: " << from;
  if (at != std::string::npos) text.replace(at, from.size(), to);
  return text;
}

// Lines 1-6.
constexpr std::string_view kHead = R"([sip]
domain = "example.com"
[cms]
master_pool = "p1.example.com"
[[sites]]
name = "A"
)";

// A standard pool; after kHead it occupies lines 7-16.
constexpr std::string_view kPool1 = R"([[pools]]
fqdn = "p1.example.com"
site = "A"
edition = "standard"
backend = { type = "sqlite", path = "p1.db" }
[[pools.servers]]
id = "fe1"
address = "127.0.0.1"
sip_port = 5060
admin_port = 8080
)";

// A second standard pool; after kHead + kPool1 it occupies lines 17-26.
constexpr std::string_view kPool2 = R"([[pools]]
fqdn = "p2.example.com"
site = "A"
edition = "standard"
backend = { type = "sqlite", path = "p2.db" }
[[pools.servers]]
id = "fe2"
address = "127.0.0.1"
sip_port = 5061
admin_port = 8081
)";

// Two standard pools in two sites, paired: valid (lines 1-30).
constexpr std::string_view kPaired = R"([sip]
domain = "example.com"
[cms]
master_pool = "p1.example.com"
[[sites]]
name = "A"
[[sites]]
name = "B"
[[pools]]
fqdn = "p1.example.com"
site = "A"
edition = "standard"
backup_pool = "p2.example.com"
backend = { type = "sqlite", path = "p1.db" }
[[pools.servers]]
id = "fe1"
address = "127.0.0.1"
sip_port = 5060
admin_port = 8080
[[pools]]
fqdn = "p2.example.com"
site = "B"
edition = "standard"
backup_pool = "p1.example.com"
backend = { type = "sqlite", path = "p2.db" }
[[pools.servers]]
id = "fe2"
address = "127.0.0.1"
sip_port = 5061
admin_port = 8081
)";

// A third standard pool in site B; after kPaired it occupies lines 31-41.
constexpr std::string_view kPool3 = R"([[pools]]
fqdn = "p3.example.com"
site = "B"
edition = "standard"
backup_pool = "p1.example.com"
backend = { type = "sqlite", path = "p3.db" }
[[pools.servers]]
id = "fe3"
address = "127.0.0.1"
sip_port = 5062
admin_port = 8082
)";

std::string Cat(std::initializer_list<std::string_view> parts) {
  std::string out;
  for (std::string_view part : parts) out += part;
  return out;
}

TEST(TopologyFixtureTest, FixturesAreValid) {
  for (const std::string& text : {Cat({kHead, kPool1}), Cat({kHead, kPool1, kPool2}), std::string(kPaired)}) {
    TopologyParseResult result = ParseTopology(text, "ok.toml");
    EXPECT_THAT(Strings(result), IsEmpty()) << text;
    EXPECT_TRUE(result.topology.has_value());
  }
}

struct BrokenCase {
  std::string name;
  std::string text;
  std::vector<std::string> expected;
};

std::vector<BrokenCase> BrokenCases() {
  std::string pool1 = Cat({kHead, kPool1});
  std::string two_pools = Cat({kHead, kPool1, kPool2});
  return {
      {"syntax_error",
       "[sip]\ndomain = \"example.com\"\n[sip]\n",
       {"broken.toml:3: syntax error: error while parsing table header: cannot redefine existing table 'sip'"}},
      {"unknown_key_in_server",
       Edit(pool1, "sip_port = 5060", "sip_prot = 5060"),
       {"broken.toml:12: missing required key 'sip_port' in server",
        "broken.toml:15: unknown key 'sip_prot' in server"}},
      {"unknown_keys_at_every_level",
       R"([sip]
domain = "example.com"
realm = "x"
[cms]
master_pool = "p1.example.com"
[logging]
level = "debug"
[[sites]]
name = "A"
region = "eu"
[[pools]]
fqdn = "p1.example.com"
site = "A"
edition = "standard"
size = 3
backend = { type = "sqlite", path = "p1.db", journal = "wal" }
[[pools.servers]]
id = "fe1"
address = "127.0.0.1"
sip_port = 5060
admin_port = 8080
)",
       {"broken.toml:3: unknown key 'realm' in [sip]",
        "broken.toml:6: unknown key 'logging' at top level",
        "broken.toml:10: unknown key 'region' in site",
        "broken.toml:15: unknown key 'size' in pool",
        "broken.toml:16: unknown key 'journal' in sqlite backend"}},
      {"authenticate_not_a_boolean",
       Edit(pool1, "domain = \"example.com\"", "domain = \"example.com\"\nauthenticate = \"no\""),
       {"broken.toml:3: 'authenticate' in [sip] must be true or false, not a string"}},
      {"digest_algorithms_unknown",
       Edit(pool1, "domain = \"example.com\"", "domain = \"example.com\"\ndigest_algorithms = [\"MD5\", \"SHA-512\"]"),
       {"broken.toml:3: 'digest_algorithms' in [sip] may only hold \"SHA-256\" and \"MD5\""}},
      {"missing_sections",
       Cat({"[[sites]]\nname = \"A\"\n", kPool1}),
       {"broken.toml:1: missing required section [sip]",
        "broken.toml:1: missing required section [cms]"}},
      {"missing_required_keys",
       R"([sip]
[cms]
master_pool = "p1.example.com"
[[sites]]
name = "A"
[[pools]]
site = "A"
backend = { type = "sqlite", path = "p1.db" }
[[pools.servers]]
id = "fe1"
address = "127.0.0.1"
admin_port = 8080
)",
       {"broken.toml:1: missing required key 'domain' in [sip]",
        "broken.toml:3: cms master pool 'p1.example.com' is not defined",
        "broken.toml:6: missing required key 'fqdn' in pool",
        "broken.toml:6: missing required key 'edition' in pool",
        "broken.toml:9: missing required key 'sip_port' in server"}},
      {"wrong_value_types",
       Edit(Edit(Edit(pool1, "\"example.com\"", "42"), "address = \"127.0.0.1\"", "address = 127"), "5060",
            "\"5060\""),
       {"broken.toml:2: 'domain' in [sip] must be a string, not an integer",
        "broken.toml:14: 'address' in server must be a string, not an integer",
        "broken.toml:15: 'sip_port' in server must be an integer, not a string"}},
      {"sections_of_the_wrong_shape",
       Cat({"sip = \"example.com\"\n[cms]\nmaster_pool = \"p1.example.com\"\n[sites]\nname = \"A\"\n", kPool1}),
       {"broken.toml:1: 'sip' at top level must be a table, not a string",
        "broken.toml:4: 'sites' at top level must be an array of tables ([[sites]]), not a table",
        "broken.toml:8: pool 'p1.example.com' is in site 'A', which is not defined"}},
      {"duplicate_pool_fqdn",
       Edit(two_pools, "fqdn = \"p2.example.com\"", "fqdn = \"P1.example.com\""),
       {"broken.toml:18: pool 'P1.example.com' is already defined at line 8"}},
      {"duplicate_server_id",
       Edit(two_pools, "id = \"fe2\"", "id = \"fe1\""),
       {"broken.toml:23: server id 'fe1' is already used at line 13"}},
      {"duplicate_site",
       Cat({kHead, "[[sites]]\nname = \"A\"\n", kPool1}),
       {"broken.toml:8: site 'A' is already defined at line 6"}},
      {"duplicate_sqlite_path",
       Edit(two_pools, "p2.db", "p1.db"),
       {"broken.toml:21: sqlite path 'p1.db' is already used by pool 'p1.example.com' at line 11"}},
      {"sip_port_conflict",
       Edit(two_pools, "sip_port = 5061", "sip_port = 5060"),
       {"broken.toml:25: 127.0.0.1:5060 is already used by the sip_port of server 'fe1' at line 15"}},
      {"sip_and_admin_port_conflicts",
       Edit(Edit(two_pools, "sip_port = 5061", "sip_port = 8080"), "admin_port = 8081", "admin_port = 5060"),
       {"broken.toml:25: 127.0.0.1:8080 is already used by the admin_port of server 'fe1' at line 16",
        "broken.toml:26: 127.0.0.1:5060 is already used by the sip_port of server 'fe1' at line 15"}},
      {"wildcard_address_conflict",
       Edit(two_pools, "address = \"127.0.0.1\"\nsip_port = 5061", "address = \"0.0.0.0\"\nsip_port = 5060"),
       {"broken.toml:25: 0.0.0.0:5060 is already used by the sip_port of server 'fe1' at line 15"}},
      {"same_port_twice_on_one_server",
       Edit(pool1, "admin_port = 8080", "admin_port = 5060"),
       {"broken.toml:16: server 'fe1' uses port 5060 for both sip_port and admin_port"}},
      {"ports_out_of_range",
       Edit(Edit(pool1, "sip_port = 5060", "sip_port = 0"), "admin_port = 8080", "admin_port = 70000"),
       {"broken.toml:15: 'sip_port' in server must be between 1 and 65535, not 0",
        "broken.toml:16: 'admin_port' in server must be between 1 and 65535, not 70000"}},
      {"pairing_not_mutual",
       Edit(std::string(kPaired), "backup_pool = \"p1.example.com\"", "# no backup pool"),
       {"broken.toml:13: pool 'p1.example.com' is paired with 'p2.example.com', but 'p2.example.com' has no "
        "backup_pool"}},
      {"pairing_with_itself",
       Edit(std::string(kPaired), "backup_pool = \"p2.example.com\"", "backup_pool = \"p1.example.com\""),
       {"broken.toml:13: pool 'p1.example.com' is paired with itself"}},
      {"pairing_with_undefined_pool",
       Edit(std::string(kPaired), "backup_pool = \"p2.example.com\"", "backup_pool = \"p9.example.com\""),
       {"broken.toml:13: pool 'p1.example.com' is paired with 'p9.example.com', which is not defined",
        "broken.toml:24: pool 'p2.example.com' is paired with 'p1.example.com', but 'p1.example.com' is paired "
        "with 'p9.example.com'"}},
      {"pool_named_as_backup_by_two_pools",
       Cat({kPaired, kPool3}),
       {"broken.toml:35: pool 'p3.example.com' is paired with 'p1.example.com', but 'p2.example.com' already "
        "names 'p1.example.com' as its backup_pool at line 24"}},
      {"partner_paired_elsewhere",
       Cat({Edit(std::string(kPaired), "backup_pool = \"p1.example.com\"", "backup_pool = \"p3.example.com\""),
            Edit(std::string(kPool3), "backup_pool = \"p1.example.com\"", "backup_pool = \"p2.example.com\"")}),
       {"broken.toml:13: pool 'p1.example.com' is paired with 'p2.example.com', but 'p2.example.com' is paired "
        "with 'p3.example.com'",
        "broken.toml:35: warning: paired pools 'p2.example.com' and 'p3.example.com' are in the same site 'B', so "
        "one site outage takes down both"}},
      {"cms_master_pool_undefined",
       Edit(pool1, "master_pool = \"p1.example.com\"", "master_pool = \"p9.example.com\""),
       {"broken.toml:4: cms master pool 'p9.example.com' is not defined"}},
      {"pool_site_undefined",
       Edit(pool1, "site = \"A\"", "site = \"Z\""),
       {"broken.toml:9: pool 'p1.example.com' is in site 'Z', which is not defined"}},
      {"standard_pool_with_two_servers",
       Cat({pool1, "[[pools.servers]]\nid = \"fe2\"\naddress = \"127.0.0.1\"\nsip_port = 5061\nadmin_port = 8081\n"}),
       {"broken.toml:10: standard pool 'p1.example.com' must have exactly 1 server, not 2"}},
      {"enterprise_pool_with_one_server",
       Edit(pool1, "\"standard\"", "\"enterprise\""),
       {"broken.toml:10: enterprise pool 'p1.example.com' must have at least 2 servers, not 1"}},
      {"pool_without_servers",
       Cat({kHead, kPool1.substr(0, kPool1.find("[[pools.servers]]"))}),
       {"broken.toml:7: pool 'p1.example.com' has no servers"}},
      {"non_positive_timers",
       Cat({kHead,
            "[backup]\nsync_interval_seconds = 0\n[resiliency]\nfailure_detection_seconds = \"fast\"\n"
            "failback_seconds = -0.5\n",
            kPool1}),
       {"broken.toml:8: 'sync_interval_seconds' in [backup] must be greater than 0, not 0",
        "broken.toml:10: 'failure_detection_seconds' in [resiliency] must be a number of seconds, not a string",
        "broken.toml:11: 'failback_seconds' in [resiliency] must be greater than 0, not -0.5"}},
      {"timers_out_of_bounds",
       Cat({kHead,
            "[backup]\nsync_interval_seconds = nan\n[resiliency]\nfailure_detection_seconds = 100000\n"
            "failback_seconds = 0.0001\n",
            kPool1}),
       {"broken.toml:8: 'sync_interval_seconds' in [backup] must be a number of seconds, not nan",
        "broken.toml:10: 'failure_detection_seconds' in [resiliency] must be at most 86400, not 100000",
        "broken.toml:11: 'failback_seconds' in [resiliency] must be at least 0.001, not 0.0001"}},
      {"lease_expiry_shorter_than_two_renewals",
       Cat({kHead, "[pool]\nlease_renew_seconds = 2\nlease_expiry_seconds = 3\n", kPool1}),
       {"broken.toml:9: 'lease_expiry_seconds' in [pool] (3 s) must be at least twice 'lease_renew_seconds' (2 s)"}},
      {"lease_timer_not_a_number",
       Cat({kHead, "[pool]\nlease_renew_seconds = \"fast\"\nlease_period = 3\n", kPool1}),
       {"broken.toml:8: 'lease_renew_seconds' in [pool] must be a number of seconds, not a string",
        "broken.toml:9: unknown key 'lease_period' in [pool]"}},
      {"bad_edition",
       Edit(pool1, "\"standard\"", "\"premium\""),
       {"broken.toml:10: unknown edition 'premium'; expected 'standard' or 'enterprise'"}},
      {"bad_backend_type",
       Edit(pool1, "\"sqlite\"", "\"mysql\""),
       {"broken.toml:11: unknown backend type 'mysql'; expected 'sqlite' or 'postgres'"}},
      {"sqlite_backend_without_path",
       Edit(pool1, ", path = \"p1.db\"", ""),
       {"broken.toml:11: missing required key 'path' in sqlite backend"}},
      {"postgres_backend_without_dsn",
       Edit(pool1, "backend = { type = \"sqlite\", path = \"p1.db\" }",
            "[pools.backend]\ntype = \"postgres\"\nmirror_dsn = \"host=db2\"\npath = \"p1.db\""),
       {"broken.toml:11: missing required key 'dsn' in postgres backend",
        "broken.toml:14: unknown key 'path' in postgres backend"}},
      {"missing_backend",
       Edit(pool1, "backend = { type = \"sqlite\", path = \"p1.db\" }", "# no backend"),
       {"broken.toml:7: missing required key 'backend' in pool"}},
      {"invalid_names",
       Edit(Edit(Edit(pool1, "\"example.com\"", "\"example..com\""), "\"fe1\"", "\"fe/1\""), "\"127.0.0.1\"",
            "\"\""),
       {"broken.toml:2: sip domain 'example..com' is not a valid domain name",
        "broken.toml:13: server id 'fe/1' may contain only letters, digits, '-' and '_'",
        "broken.toml:14: 'address' in server must not be empty"}},
      {"invalid_pool_fqdn_and_address",
       Edit(Edit(two_pools, "fqdn = \"p2.example.com\"", "fqdn = \"p2 example.com\""), "address = \"127.0.0.1\"",
            "address = \"host name\""),
       {"broken.toml:14: server address 'host name' is neither an IP address nor a host name",
        "broken.toml:18: pool fqdn 'p2 example.com' is not a valid host name"}},
      {"pool_entries_not_tables",
       Cat({"pools = [1, \"p2\"]\n", kHead}),
       {"broken.toml:1: 'pools' at top level must be an array of tables, but an entry is an integer",
        "broken.toml:1: 'pools' at top level must be an array of tables, but an entry is a string",
        "broken.toml:5: cms master pool 'p1.example.com' is not defined"}},
      {"brackets_nested_too_deeply",
       Cat({kHead, "x = ", std::string(17, '['), std::string(17, ']'), "\n"}),
       {"broken.toml:7: syntax error: more than 16 nested brackets or braces"}},
      {"key_with_too_many_dotted_parts",
       [] {
         // toml++ recurses once per part: 100,000 parts would overflow the stack.
         std::string key = "x";
         for (int i = 0; i < 100000; ++i) key += ".x";
         return Cat({kHead, kPool1, key, " = 1\n"});
       }(),
       {"broken.toml:17: syntax error: more than 16 '.' outside strings on one line"}},
      {"malformed_table_header",
       Cat({kHead, "[=x]\n"}),
       {"broken.toml:7: syntax error: error while parsing key: expected bare key starting character or string "
        "delimiter, saw '='"}},
      {"key_after_array_of_tables_belongs_to_it",
       Cat({kHead, "pools = []\n"}),
       {"broken.toml:4: cms master pool 'p1.example.com' is not defined",
        "broken.toml:7: unknown key 'pools' in site"}},
  };
}

void PrintTo(const BrokenCase& c, std::ostream* os) { *os << c.name; }

class BrokenTopologyTest : public ::testing::TestWithParam<BrokenCase> {};

TEST_P(BrokenTopologyTest, ReportsExactDiagnostics) {
  const BrokenCase& c = GetParam();
  TopologyParseResult result = ParseTopology(c.text, "broken.toml");
  EXPECT_EQ(Strings(result), c.expected) << c.text;
  bool expect_errors = false;
  for (const std::string& e : c.expected) expect_errors |= e.find(": warning: ") == std::string::npos;
  EXPECT_EQ(result.HasErrors(), expect_errors);
  EXPECT_EQ(result.topology.has_value(), !expect_errors);
}

INSTANTIATE_TEST_SUITE_P(Cases, BrokenTopologyTest, ::testing::ValuesIn(BrokenCases()),
                         [](const ::testing::TestParamInfo<BrokenCase>& info) { return info.param.name; });

TEST(TopologyTest, AtLeastTwentyBrokenCases) { EXPECT_GE(BrokenCases().size(), 20u); }

TEST(TopologyTest, ReportsEveryErrorInLineOrder) {
  // Errors found by different passes (keys, references, duplicates, ports) come out
  // sorted by line, not in the order they were found.
  std::string text = Cat({kHead, kPool1, kPool2});
  text = Edit(text, "master_pool = \"p1.example.com\"", "master_pool = \"p7.example.com\"");
  text = Edit(text, "sip_port = 5060", "sip_prot = 5060");
  text = Edit(text, "id = \"fe2\"", "id = \"fe1\"");
  text = Edit(text, "sip_port = 5061", "sip_port = 8080");
  text = Edit(text, "site = \"A\"\nedition = \"standard\"\nbackend = { type = \"sqlite\", path = \"p2.db\" }",
              "site = \"Q\"\nedition = \"standard\"\nbackend = { type = \"sqlite\", path = \"p2.db\" }");
  TopologyParseResult result = ParseTopology(text, "many.toml");
  EXPECT_THAT(Strings(result),
              ElementsAre("many.toml:4: cms master pool 'p7.example.com' is not defined",
                          "many.toml:12: missing required key 'sip_port' in server",
                          "many.toml:15: unknown key 'sip_prot' in server",
                          "many.toml:19: pool 'p2.example.com' is in site 'Q', which is not defined",
                          "many.toml:23: server id 'fe1' is already used at line 13",
                          "many.toml:25: 127.0.0.1:8080 is already used by the admin_port of server 'fe1' at line 16"));
  EXPECT_TRUE(result.HasErrors());
  EXPECT_FALSE(result.topology.has_value());
}

TEST(TopologyTest, WarningsOnlyStillYieldATopology) {
  // Paired pools in one site, and an enterprise pool of two servers.
  std::string text = R"([sip]
domain = "example.com"
[cms]
master_pool = "p1.example.com"
[[sites]]
name = "A"
[[sites]]
name = "B"
[[pools]]
fqdn = "p1.example.com"
site = "A"
edition = "enterprise"
backup_pool = "p2.example.com"
backend = { type = "sqlite", path = "p1.db" }
[[pools.servers]]
id = "fe1"
address = "127.0.0.1"
sip_port = 5060
admin_port = 8080
[[pools.servers]]
id = "fe1b"
address = "127.0.0.1"
sip_port = 5065
admin_port = 8085
[[pools]]
fqdn = "p2.example.com"
site = "A"
edition = "standard"
backup_pool = "p1.example.com"
backend = { type = "sqlite", path = "p2.db" }
[[pools.servers]]
id = "fe2"
address = "127.0.0.1"
sip_port = 5061
admin_port = 8081
[[pools]]
fqdn = "p3.example.com"
site = "B"
edition = "standard"
backend = { type = "postgres", dsn = "host=db1 dbname=p3" }
[[pools.servers]]
id = "fe3"
address = "::1"
sip_port = 5060
admin_port = 8080
)";
  TopologyParseResult result = ParseTopology(text, "warn.toml");
  EXPECT_THAT(Strings(result),
              ElementsAre("warn.toml:12: warning: enterprise pool 'p1.example.com' has only 2 servers; at least 3 "
                          "are recommended",
                          "warn.toml:29: warning: paired pools 'p1.example.com' and 'p2.example.com' are in the same "
                          "site 'A', so one site outage takes down both"));
  EXPECT_FALSE(result.HasErrors());
  ASSERT_TRUE(result.topology.has_value());
  const Topology& t = *result.topology;
  ASSERT_EQ(t.pools.size(), 3u);
  EXPECT_EQ(t.pools[0].servers.size(), 2u);  // [[pools.servers]] binds to the last [[pools]]
  EXPECT_EQ(t.pools[1].servers.size(), 1u);
  EXPECT_EQ(t.pools[2].backend.type, BackendType::kPostgres);
  EXPECT_EQ(t.pools[2].backend.postgres_dsn, "host=db1 dbname=p3");
  EXPECT_EQ(t.pools[2].backend.postgres_mirror_dsn, "");
  EXPECT_FALSE(t.pools[2].backup_pool.has_value());
}

TEST(TopologyTest, TwoSitesExample) {
  TopologyParseResult result = LoadTopologyFile(TANDEM_SOURCE_DIR "/examples/two-sites.toml");
  EXPECT_THAT(Strings(result), IsEmpty());
  ASSERT_TRUE(result.topology.has_value());
  const Topology& t = *result.topology;
  EXPECT_EQ(t.sip_domain, "example.com");
  EXPECT_EQ(t.cms_master_pool, "pool1.example.com");
  EXPECT_EQ(t.backup_sync_interval, std::chrono::seconds(2));
  EXPECT_EQ(t.failure_detection_interval, std::chrono::seconds(120));
  EXPECT_EQ(t.failback_interval, std::chrono::seconds(240));
  ASSERT_EQ(t.sites.size(), 2u);
  EXPECT_EQ(t.sites[0].name, "siteA");
  EXPECT_EQ(t.sites[1].name, "siteB");
  ASSERT_EQ(t.pools.size(), 2u);

  const PoolSpec* pool1 = t.FindPool("pool1.example.com");
  const PoolSpec* pool2 = t.FindPool("POOL2.example.com");  // DNS names ignore case
  ASSERT_NE(pool1, nullptr);
  ASSERT_NE(pool2, nullptr);
  EXPECT_EQ(t.BackupPoolOf("pool1.example.com"), pool2);
  EXPECT_EQ(t.BackupPoolOf("pool2.example.com"), pool1);
  EXPECT_EQ(t.FindPool("pool3.example.com"), nullptr);
  EXPECT_EQ(t.BackupPoolOf("pool3.example.com"), nullptr);

  EXPECT_EQ(pool1->site, "siteA");
  EXPECT_EQ(pool2->site, "siteB");
  EXPECT_EQ(pool1->edition, PoolEdition::kEnterprise);
  EXPECT_EQ(pool1->backend.type, BackendType::kSqlite);
  EXPECT_EQ(pool1->backend.sqlite_path, "pool1.db");
  EXPECT_EQ(pool2->backend.sqlite_path, "pool2.db");
  ASSERT_EQ(pool1->servers.size(), 3u);
  ASSERT_EQ(pool2->servers.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(pool1->servers[i].id, "p1fe" + std::to_string(i + 1));
    EXPECT_EQ(pool1->servers[i].address, "127.0.0.1");
    EXPECT_EQ(pool1->servers[i].sip_port, 5061 + i);
    EXPECT_EQ(pool1->servers[i].admin_port, 8101 + i);
    EXPECT_EQ(pool2->servers[i].id, "p2fe" + std::to_string(i + 1));
    EXPECT_EQ(pool2->servers[i].sip_port, 5071 + i);
    EXPECT_EQ(pool2->servers[i].admin_port, 8201 + i);
  }

  const PoolSpec* owner = nullptr;
  const ServerSpec* server = t.FindServer("p2fe3", &owner);
  ASSERT_NE(server, nullptr);
  EXPECT_EQ(owner, pool2);
  EXPECT_EQ(server->sip_port, 5073);
  EXPECT_GT(server->line, pool2->line);
  EXPECT_EQ(t.FindServer("nope", &owner), nullptr);
  EXPECT_EQ(owner, nullptr);
}

TEST(TopologyTest, SingleServerExample) {
  TopologyParseResult result = LoadTopologyFile(TANDEM_SOURCE_DIR "/examples/single-server.toml");
  EXPECT_THAT(Strings(result), IsEmpty());
  ASSERT_TRUE(result.topology.has_value());
  const Topology& t = *result.topology;
  EXPECT_EQ(t.cms_master_pool, "pool1.example.com");
  ASSERT_EQ(t.pools.size(), 1u);
  const PoolSpec& pool = t.pools[0];
  EXPECT_EQ(pool.fqdn, "pool1.example.com");
  EXPECT_EQ(pool.edition, PoolEdition::kStandard);
  EXPECT_FALSE(pool.backup_pool.has_value());
  EXPECT_EQ(t.BackupPoolOf("pool1.example.com"), nullptr);
  EXPECT_EQ(pool.backend.sqlite_path, "pool1.db");
  ASSERT_EQ(pool.servers.size(), 1u);
  EXPECT_EQ(pool.servers[0].id, "fe1");
  EXPECT_EQ(pool.servers[0].address, "127.0.0.1");
  EXPECT_EQ(pool.servers[0].sip_port, 5060);
  EXPECT_EQ(pool.servers[0].admin_port, 8080);
}

TEST(TopologyTest, FractionalTimersAndDefaults) {
  std::string text = Cat({kHead, "[backup]\nsync_interval_seconds = 0.2\n[resiliency]\nfailback_seconds = 30\n",
                          kPool1});
  TopologyParseResult result = ParseTopology(text, "t.toml");
  ASSERT_TRUE(result.topology.has_value()) << ::testing::PrintToString(Strings(result));
  EXPECT_EQ(result.topology->backup_sync_interval, std::chrono::milliseconds(200));
  EXPECT_EQ(result.topology->failure_detection_interval, std::chrono::seconds(120));
  EXPECT_EQ(result.topology->failback_interval, std::chrono::seconds(30));
}

TEST(TopologyTest, DotsAndBracketsInsideStringsAndCommentsAreNotNesting) {
  std::string text = Cat({kHead, "# [[[[[[[[[[[[[[[[[[[[ .................... {{{{{{{{{{{{{{{{{{{{\n", kPool1});
  text = Edit(text, R"(path = "p1.db")", R"(path = '''a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q.r.s.[[[[[[[[[[[[[[[[[[.''''')");
  text = Edit(text, R"(address = "127.0.0.1")", R"(address = "127.0.0.1" # "[[[[[[[[[[[[[[[[[[[[ \)");
  text = Edit(text, R"(id = "fe1")", R"(id = """fe1""")");
  text = Edit(text, R"(name = "A")", R"(name = """A\"""x""")");
  text = Edit(text, R"(site = "A")", R"(site = """A\"""x""")");
  text = Edit(text, R"(edition = "standard")", R"(edition = "s\"[[[[[[[[[[[[[[[[[[[["[2:])");
  TopologyParseResult result = ParseTopology(text, "strings.toml");
  // The line with the bad edition string is still seen as one string and then code.
  EXPECT_THAT(Strings(result), ElementsAre("strings.toml:11: syntax error: error while parsing key-value pair: "
                                           "expected a comment or whitespace, saw '['"));
  text = Edit(text, R"(edition = "s\"[[[[[[[[[[[[[[[[[[[["[2:])", R"(edition = "standard")");
  result = ParseTopology(text, "strings.toml");
  ASSERT_TRUE(result.topology.has_value()) << ::testing::PrintToString(Strings(result)) << text;
  EXPECT_EQ(result.topology->pools[0].backend.sqlite_path, "a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q.r.s.[[[[[[[[[[[[[[[[[[.''");
  EXPECT_EQ(result.topology->pools[0].servers[0].id, "fe1");
  EXPECT_EQ(result.topology->pools[0].site, "A\"\"\"x");
}

TEST(TopologyTest, UnreadableFileIsOneDiagnosticAtLineZero) {
  TopologyParseResult result = LoadTopologyFile("/nonexistent/topology.toml");
  EXPECT_THAT(Strings(result), ElementsAre("/nonexistent/topology.toml:0: cannot read file: no such file"));
  EXPECT_TRUE(result.HasErrors());
  EXPECT_FALSE(result.topology.has_value());
}

TEST(TopologyTest, DiagnosticToString) {
  EXPECT_EQ((Diagnostic{Severity::kError, "a.toml", 3, "bad"}).ToString(), "a.toml:3: bad");
  EXPECT_EQ((Diagnostic{Severity::kWarning, "a.toml", 4, "meh"}).ToString(), "a.toml:4: warning: meh");
}

TEST(TopologyTest, Names) {
  EXPECT_EQ(EditionName(PoolEdition::kStandard), "standard");
  EXPECT_EQ(EditionName(PoolEdition::kEnterprise), "enterprise");
  EXPECT_EQ(BackendTypeName(BackendType::kSqlite), "sqlite");
  EXPECT_EQ(BackendTypeName(BackendType::kPostgres), "postgres");
}

TEST(TopologyTest, ToJson) {
  std::string text = Edit(std::string(kPaired), "backend = { type = \"sqlite\", path = \"p2.db\" }",
                          "backend = { type = \"postgres\", dsn = \"host=db1\", mirror_dsn = \"host=db2\" }");
  TopologyParseResult result = ParseTopology(text, "j.toml");
  ASSERT_TRUE(result.topology.has_value()) << ::testing::PrintToString(Strings(result));
  nlohmann::json j = TopologyToJson(*result.topology);
  EXPECT_EQ(j["sip_domain"], "example.com");
  EXPECT_EQ(j["cms_master_pool"], "p1.example.com");
  EXPECT_EQ(j["backup_sync_interval_seconds"], 2.0);
  EXPECT_EQ(j["failure_detection_seconds"], 120.0);
  EXPECT_EQ(j["failback_seconds"], 240.0);
  EXPECT_EQ(j["sites"], nlohmann::json::parse(R"([{"name":"A"},{"name":"B"}])"));
  ASSERT_EQ(j["pools"].size(), 2u);
  EXPECT_EQ(j["pools"][0], nlohmann::json::parse(R"({"fqdn":"p1.example.com","site":"A","edition":"standard",
      "backup_pool":"p2.example.com","backend":{"type":"sqlite","path":"p1.db"},
      "servers":[{"id":"fe1","address":"127.0.0.1","sip_port":5060,"admin_port":8080}]})"));
  EXPECT_EQ(j["pools"][1]["backend"],
            nlohmann::json::parse(R"({"type":"postgres","dsn":"host=db1","mirror_dsn":"host=db2"})"));
}

TEST(TopologyTest, NeverThrowsOnTruncatedOrGarbledInput) {
  // Every prefix of a valid file, and a few corruptions of it, parse to either a
  // topology or errors: never an exception, never a crash.
  std::string text(kPaired);
  for (size_t n = 0; n <= text.size(); ++n) {
    TopologyParseResult result = ParseTopology(std::string_view(text).substr(0, n), "cut.toml");
    EXPECT_NE(result.topology.has_value(), result.HasErrors()) << n;
  }
  for (size_t i = 0; i < text.size(); i += 7) {
    for (char c : {'\0', '"', '[', '=', '\xff', '\n'}) {
      std::string garbled = text;
      garbled[i] = c;
      TopologyParseResult result = ParseTopology(garbled, "garbled.toml");
      EXPECT_NE(result.topology.has_value(), result.HasErrors()) << i;
    }
  }
}

}  // namespace
}  // namespace tandem
