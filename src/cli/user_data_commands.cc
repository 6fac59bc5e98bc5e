// `tandem user contacts|groups|note|privacy ...`: see cli/data_commands.h.
#include <cstdio>
#include <set>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/command_util.h"
#include "cli/data_commands.h"

namespace tandem {
namespace {

using nlohmann::json;

std::string Dump(const json& value, int indent = 2) { return value.dump(indent, ' ', false, json::error_handler_t::replace); }

void PrintJson(const json& value) { std::printf("%s\n", Dump(value).c_str()); }

std::string UserPath(std::string_view path, const std::string& user) {
  return fmt::format("{}?user={}", path, UrlEncode(user));
}

std::string Str(const json& value, std::string_view key) {
  auto found = value.find(key);
  return found != value.end() && found->is_string() ? found->get<std::string>() : std::string();
}

std::string JoinList(const json& list, std::string_view none = "(none)") {
  std::string out;
  if (list.is_array()) {
    for (const json& item : list) {
      if (!out.empty()) out += ", ";
      out += item.is_string() ? item.get<std::string>() : Dump(item, -1);
    }
  }
  return out.empty() ? std::string(none) : out;
}

// The `user` subcommand AddUserCommands made, or a new one.
CLI::App* UserCommand(CLI::App& app) {
  auto found = app.get_subcommands([](CLI::App* sub) { return sub->get_name() == "user"; });
  if (!found.empty()) return found.front();
  return app.add_subcommand("user", "provision users and manage their data")->require_subcommand(1);
}

std::string_view PolicyMeaning(std::string_view policy) {
  if (policy == "allow-all") return "everyone sees presence, except the block list";
  if (policy == "allow-listed") return "only the allow list sees presence";
  return "contacts and the allow list see presence";
}

void AddContactCommands(CLI::App& user, ConnectionOptions& connection, bool& as_json) {
  auto* contacts = user.add_subcommand("contacts", "a user's contact list")->require_subcommand(1);

  auto* add = contacts->add_subcommand("add", "add a contact to a user's list (or replace the entry)");
  static std::string add_user, add_contact, add_name;
  static std::vector<std::string> add_groups;
  add->add_option("USER", add_user, "the list's owner, e.g. sip:alice@example.com")->required();
  add->add_option("CONTACT", add_contact, "the contact, e.g. sip:bob@example.com")->required();
  add->add_option("--name", add_name, "display name");
  add->add_option("--group", add_groups, "file the contact under this group (repeatable; created if missing)");
  add->callback([&connection, &as_json] {
    if (!add_groups.empty()) {
      // Groups are rows of their own: create the missing ones first.
      json existing = CallJson(connection, "GET", UserPath("/users/groups", add_user));
      std::set<std::string> names;
      for (const json& group : existing["groups"]) names.insert(Str(group, "name"));
      for (const std::string& group : add_groups) {
        if (names.count(group)) continue;
        CallJson(connection, "POST", UserPath("/users/groups", add_user), json{{"name", group}}.dump());
        names.insert(group);
        if (!as_json) std::printf("Created group '%s' for %s.\n", group.c_str(), add_user.c_str());
      }
    }
    json body{{"contact", add_contact}, {"groups", add_groups}};
    if (!add_name.empty()) body["name"] = add_name;
    json answer = CallJson(connection, "POST", UserPath("/users/contacts", add_user), body.dump());
    if (as_json) return PrintJson(answer);
    std::printf("Added %s to the contacts of %s%s.\n", Str(answer, "contact").c_str(), Str(answer, "user").c_str(),
                add_groups.empty() ? "" : fmt::format(" (groups: {})", JoinList(answer["groups"])).c_str());
  });

  auto* remove = contacts->add_subcommand("remove", "remove a contact from a user's list");
  static std::string remove_user, remove_contact;
  remove->add_option("USER", remove_user, "the list's owner")->required();
  remove->add_option("CONTACT", remove_contact, "the contact to remove")->required();
  remove->callback([&connection, &as_json] {
    json answer = CallJson(connection, "DELETE",
                           UserPath("/users/contacts", remove_user) + "&contact=" + UrlEncode(remove_contact));
    if (as_json) return PrintJson(answer);
    std::printf("Removed %s from the contacts of %s.\n", Str(answer, "removed").c_str(), Str(answer, "user").c_str());
  });

  auto* list = contacts->add_subcommand("list", "show a user's contact list");
  static std::string list_user;
  list->add_option("USER", list_user, "the list's owner")->required();
  list->callback([&connection, &as_json] {
    json answer = CallJson(connection, "GET", UserPath("/users/contacts", list_user));
    if (as_json) return PrintJson(answer);
    if (answer["contacts"].empty()) {
      std::printf("%s has no contacts.\n", Str(answer, "user").c_str());
      return;
    }
    std::printf("%-40s %-24s %s\n", "CONTACT", "NAME", "GROUPS");
    for (const json& contact : answer["contacts"]) {
      std::printf("%-40s %-24s %s\n", Str(contact, "contact").c_str(), Str(contact, "display_name").c_str(),
                  JoinList(contact["groups"], "-").c_str());
    }
  });
}

void AddGroupCommands(CLI::App& user, ConnectionOptions& connection, bool& as_json) {
  auto* groups = user.add_subcommand("groups", "the groups of a user's contact list")->require_subcommand(1);

  auto* add = groups->add_subcommand("add", "add a contact group");
  static std::string add_user, add_name;
  add->add_option("USER", add_user, "the owner")->required();
  add->add_option("NAME", add_name, "group name")->required();
  add->callback([&connection, &as_json] {
    json answer = CallJson(connection, "POST", UserPath("/users/groups", add_user), json{{"name", add_name}}.dump());
    if (as_json) return PrintJson(answer);
    std::printf("Added group '%s' for %s.\n", add_name.c_str(), Str(answer, "user").c_str());
  });

  auto* remove = groups->add_subcommand("remove", "remove an empty contact group");
  static std::string remove_user, remove_name;
  remove->add_option("USER", remove_user, "the owner")->required();
  remove->add_option("NAME", remove_name, "group name")->required();
  remove->callback([&connection, &as_json] {
    json answer = CallJson(connection, "DELETE", UserPath("/users/groups", remove_user) + "&name=" + UrlEncode(remove_name));
    if (as_json) return PrintJson(answer);
    std::printf("Removed group '%s' of %s.\n", remove_name.c_str(), Str(answer, "user").c_str());
  });

  auto* list = groups->add_subcommand("list", "show a user's contact groups");
  static std::string list_user;
  list->add_option("USER", list_user, "the owner")->required();
  list->callback([&connection, &as_json] {
    json answer = CallJson(connection, "GET", UserPath("/users/groups", list_user));
    if (as_json) return PrintJson(answer);
    if (answer["groups"].empty()) {
      std::printf("%s has no contact groups.\n", Str(answer, "user").c_str());
      return;
    }
    for (const json& group : answer["groups"]) std::printf("%s\n", Str(group, "name").c_str());
  });
}

void AddNoteCommands(CLI::App& user, ConnectionOptions& connection, bool& as_json) {
  auto* note = user.add_subcommand("note", "a user's presence note")->require_subcommand(1);

  auto* set = note->add_subcommand("set", "set the presence note");
  static std::string set_user, set_text;
  set->add_option("USER", set_user, "the user")->required();
  set->add_option("TEXT", set_text, "the note (\"\" clears it)")->required();
  set->callback([&connection, &as_json] {
    json answer = CallJson(connection, "POST", UserPath("/users/note", set_user), json{{"note", set_text}}.dump());
    if (as_json) return PrintJson(answer);
    if (set_text.empty()) {
      std::printf("Cleared the presence note of %s.\n", Str(answer, "user").c_str());
    } else {
      std::printf("Set the presence note of %s.\n", Str(answer, "user").c_str());
    }
  });

  auto* clear = note->add_subcommand("clear", "clear the presence note");
  static std::string clear_user;
  clear->add_option("USER", clear_user, "the user")->required();
  clear->callback([&connection, &as_json] {
    json answer = CallJson(connection, "DELETE", UserPath("/users/note", clear_user));
    if (as_json) return PrintJson(answer);
    std::printf("Cleared the presence note of %s.\n", Str(answer, "user").c_str());
  });

  auto* show = note->add_subcommand("show", "show the presence note");
  static std::string show_user;
  show->add_option("USER", show_user, "the user")->required();
  show->callback([&connection, &as_json] {
    json answer = CallJson(connection, "GET", UserPath("/users/note", show_user));
    if (as_json) return PrintJson(answer);
    std::string text = Str(answer, "note");
    if (text.empty()) {
      std::printf("%s has no presence note.\n", Str(answer, "user").c_str());
      return;
    }
    int64_t updated = answer.value("updated_at_ms", int64_t{0});
    std::printf("%s (set %s):\n%s\n", Str(answer, "user").c_str(), FormatTime(updated).c_str(), text.c_str());
  });
}

void AddPrivacyCommands(CLI::App& user, ConnectionOptions& connection, bool& as_json) {
  auto* privacy = user.add_subcommand("privacy", "who may see a user's presence")->require_subcommand(1);

  auto print = [](const json& answer) {
    std::string policy = Str(answer, "policy");
    std::printf("Privacy of %s: %s (%s)\n", Str(answer, "user").c_str(), policy.c_str(),
                std::string(PolicyMeaning(policy)).c_str());
    std::printf("  allow: %s\n", JoinList(answer["allow"]).c_str());
    std::printf("  block: %s\n", JoinList(answer["block"]).c_str());
  };

  auto* show = privacy->add_subcommand("show", "show the privacy settings");
  static std::string show_user;
  show->add_option("USER", show_user, "the user")->required();
  show->callback([&connection, &as_json, print] {
    json answer = CallJson(connection, "GET", UserPath("/users/privacy", show_user));
    if (as_json) return PrintJson(answer);
    print(answer);
  });

  auto* set = privacy->add_subcommand("set", "change the privacy settings (what is not given is kept)");
  static std::string set_user, set_policy;
  static std::vector<std::string> set_allow, set_block;
  static bool clear_allow = false, clear_block = false;
  set->add_option("USER", set_user, "the user")->required();
  set->add_option("--policy", set_policy, "allow-contacts (default), allow-all or allow-listed")
      ->check(CLI::IsMember({"allow-contacts", "allow-all", "allow-listed"}));
  auto* allow = set->add_option("--allow", set_allow, "a URI or domain allowed to see presence (repeatable; replaces the list)");
  auto* block = set->add_option("--block", set_block, "a URI or domain never shown presence (repeatable; replaces the list)");
  set->add_flag("--clear-allow", clear_allow, "empty the allow list")->excludes(allow);
  set->add_flag("--clear-block", clear_block, "empty the block list")->excludes(block);
  set->callback([&connection, &as_json, print] {
    json body = json::object();
    if (!set_policy.empty()) body["policy"] = set_policy;
    if (!set_allow.empty() || clear_allow) body["allow"] = set_allow;
    if (!set_block.empty() || clear_block) body["block"] = set_block;
    if (body.empty()) Fail("nothing to change: give --policy, --allow, --block, --clear-allow or --clear-block");
    json answer = CallJson(connection, "POST", UserPath("/users/privacy", set_user), body.dump());
    if (as_json) return PrintJson(answer);
    print(answer);
  });
}

}  // namespace

void AddUserDataCommands(CLI::App& app, ConnectionOptions& connection, bool& as_json) {
  CLI::App* user = UserCommand(app);
  AddContactCommands(*user, connection, as_json);
  AddGroupCommands(*user, connection, as_json);
  AddNoteCommands(*user, connection, as_json);
  AddPrivacyCommands(*user, connection, as_json);
}

}  // namespace tandem
