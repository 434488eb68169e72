// error_of(fn): the message of the exception fn throws, or "" when it throws none — for
// tests that check what an error message names. Shared by the unit tests.
#pragma once

#include <exception>
#include <functional>
#include <string>

inline std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}
