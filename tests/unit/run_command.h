// run_command(command, scratch): runs a shell command with stdout and stderr captured in
// `scratch` (removed afterwards) and returns "status N\n" followed by the output, so a test
// can check the exit status and the message in one string. Shared by the unit tests that
// drive loom executables.
#pragma once

#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

inline std::string run_command(const std::string& command, const std::filesystem::path& scratch) {
  const int status = std::system((command + " > " + scratch.string() + " 2>&1").c_str());
  std::ifstream in(scratch);
  std::stringstream text;
  text << in.rdbuf();
  std::filesystem::remove(scratch);
  return "status " + std::to_string(WEXITSTATUS(status)) + "\n" + text.str();
}
