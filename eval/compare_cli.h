// `loom-eval compare …`: the command line of the result comparison (eval/compare.h).
#pragma once

namespace loom::eval {

// argv[0] is "compare". Returns the exit code (0 fine, 1 a regression past the gate, 2 bad input).
int compare_command(int argc, char** argv);

}  // namespace loom::eval
