#include "sip/syntax.h"

#include <gtest/gtest.h>

namespace tandem::sip {
namespace {

TEST(SyntaxTest, CharClasses) {
  EXPECT_TRUE(IsToken("INVITE"));
  EXPECT_TRUE(IsToken("!interesting-Method0123456789_*+`.%indeed'~"));
  EXPECT_FALSE(IsToken(""));
  EXPECT_FALSE(IsToken("a b"));
  EXPECT_FALSE(IsToken("a,b"));
  EXPECT_FALSE(IsToken(std::string_view("a\0b", 3)));
  EXPECT_TRUE(IsEscapedClass("user%20name", kUserChar));
  EXPECT_FALSE(IsEscapedClass("user%2", kUserChar));
  EXPECT_FALSE(IsEscapedClass("user%zz", kUserChar));
  EXPECT_FALSE(IsEscapedClass("us er", kUserChar));
}

TEST(SyntaxTest, CaseInsensitiveCompare) {
  EXPECT_TRUE(EqualsIgnoreCase("Content-Length", "content-LENGTH"));
  EXPECT_FALSE(EqualsIgnoreCase("Via", "Vias"));
  EXPECT_TRUE(StartsWithIgnoreCase("sip/2.0", "SIP/"));
}

TEST(SyntaxTest, TrimAndQuotes) {
  EXPECT_EQ(TrimLws("  \t a b \r\n "), "a b");
  EXPECT_EQ(TrimLws("   "), "");
  EXPECT_EQ(ScanQuotedString("\"ab\\\"c\" rest", 0), 7u);
  EXPECT_FALSE(ScanQuotedString("\"unterminated", 0).has_value());
  EXPECT_FALSE(ScanQuotedString("\"ends in backslash\\", 0).has_value());
  EXPECT_FALSE(ScanQuotedString("\"line\r\nbreak\"", 0).has_value());
  EXPECT_EQ(Unquote("\"J Rosenberg \\\\\\\"\""), "J Rosenberg \\\"");
  EXPECT_EQ(Unquote("token"), "token");
  EXPECT_EQ(StripQuotes("\"abc\""), "abc");
  EXPECT_EQ(Quote("a\"b\\c"), "\"a\\\"b\\\\c\"");
  EXPECT_EQ(Unquote(Quote("a\"b\\c")), "a\"b\\c");
}

TEST(SyntaxTest, CommaListRespectsQuotesAndAngles) {
  SmallVector<std::string_view, 8> out;
  ASSERT_TRUE(SplitCommaList(" \"a, b\" <sip:x;p=1,2>;q=1 , <sip:y> ,z", &out));
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[0], "\"a, b\" <sip:x;p=1,2>;q=1");
  EXPECT_EQ(out[1], "<sip:y>");
  EXPECT_EQ(out[2], "z");
}

TEST(SyntaxTest, CommaListErrors) {
  SmallVector<std::string_view, 8> out;
  EXPECT_FALSE(SplitCommaList("a,,b", &out));
  out.clear();
  EXPECT_FALSE(SplitCommaList("a,", &out));
  out.clear();
  EXPECT_FALSE(SplitCommaList("\"a, b", &out));
  out.clear();
  EXPECT_FALSE(SplitCommaList("<sip:a", &out));
  out.clear();
  EXPECT_TRUE(SplitCommaList("", &out));
  EXPECT_TRUE(out.empty());
}

TEST(SyntaxTest, Escaping) {
  EXPECT_EQ(Unescape("%75se%72"), "user");
  EXPECT_EQ(Unescape("a%00b"), std::string("a\0b", 3));
  EXPECT_EQ(Unescape("bad%zzescape%4"), "bad%zzescape%4");
  EXPECT_EQ(Escape("I have spaces", kUserChar), "I%20have%20spaces");
  EXPECT_EQ(Escape("a@b", kUserChar), "a%40b");
  EXPECT_TRUE(HasValidEscapes("%41%42"));
  EXPECT_FALSE(HasValidEscapes("%4"));
}

TEST(SyntaxTest, Numbers) {
  EXPECT_EQ(ParseUint32("0"), 0u);
  EXPECT_EQ(ParseUint32("0068"), 68u);
  EXPECT_EQ(ParseUint32("4294967295"), 4294967295u);
  EXPECT_FALSE(ParseUint32("4294967296").has_value());
  EXPECT_FALSE(ParseUint32("36893488147419103232").has_value());
  EXPECT_FALSE(ParseUint32("-1").has_value());
  EXPECT_FALSE(ParseUint32("").has_value());
  EXPECT_FALSE(ParseUint32("1 2").has_value());
  EXPECT_EQ(ParseUint64("18446744073709551615"), UINT64_MAX);
  EXPECT_FALSE(ParseUint64("18446744073709551616").has_value());
}

TEST(SmallVectorTest, GrowsPastInlineCapacity) {
  SmallVector<int, 2> v;
  for (int i = 0; i < 100; ++i) v.push_back(i);
  ASSERT_EQ(v.size(), 100u);
  EXPECT_EQ(v[99], 99);
  v.insert(0, -1);
  EXPECT_EQ(v[0], -1);
  EXPECT_EQ(v[1], 0);
  v.erase(0);
  EXPECT_EQ(v[0], 0);
  SmallVector<int, 2> copy = v;
  EXPECT_EQ(copy.size(), 100u);
  SmallVector<int, 2> moved = std::move(copy);
  EXPECT_EQ(moved[50], 50);
  EXPECT_TRUE(copy.empty());
  SmallVector<int, 2> small{1, 2};
  SmallVector<int, 2> small_moved = std::move(small);
  EXPECT_EQ(small_moved[1], 2);
}

}  // namespace
}  // namespace tandem::sip
