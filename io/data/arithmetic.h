// A synthetic arithmetic task with verifiable answers, for PPO/GRPO and evaluation: each
// problem is `a op b` with operands in [0, max_operand] and op one of + - *, rendered as
//
//   prompt   "Q: 17 + 25 = ?\nA:"
//   answer   "42"              (decimal, "-" for negatives; verifier.h checks responses)
//
// or, with spaced_digits, every number digit by digit ("Q: 1 7 + 2 5 = ?\nA:", answer
// "4 2", "-7" stays "-7", "-42" is "-4 2"), so that a BPE tokenizer gives each digit its own
// token (" 1", " 7") and a model can learn digit-wise rules that carry over to unseen
// problems, where whole-number tokens (" 17") can only be memorised problem by problem.
//
// Problems are distinct triples (a, op, b) drawn without replacement from the
// ops.size() · (max_operand + 1)^2 possible ones by a counter-based generator: draw i is a
// function of (seed, i) only. The first `validation` distinct draws form the validation
// split and the next `train` draws the training split, so the splits are disjoint by
// (a, op, b), and the validation split does not change when only `train` does.
//
// Thread safety: reentrant; results are plain values.
#pragma once

#include "io/data/jsonl.h"

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace loom::io {

struct ArithmeticOptions {
  std::size_t train = 20000;
  std::size_t validation = 1000;
  std::uint64_t seed = 1234;
  std::int64_t max_operand = 99;  // operands in [0, max_operand]; at most 10^9
  std::string ops = "+,-,*";      // comma-separated subset of + - *
  bool spaced_digits = false;     // numbers digit by digit: "1 7 + 2 5", answer "4 2"
};

struct ArithmeticProblem {
  std::int64_t a;
  char op;  // '+', '-' or '*'
  std::int64_t b;
  std::int64_t result;
  std::string prompt;  // "Q: {a} {op} {b} = ?\nA:"
  std::string answer;  // std::to_string(result), or spaced_digits(result)
};

struct ArithmeticSplit {
  std::vector<ArithmeticProblem> train;
  std::vector<ArithmeticProblem> validation;
};

// "+,-,*" → {'+', '-', '*'}; throws std::invalid_argument naming a bad or repeated op.
std::vector<char> parse_arithmetic_ops(std::string_view ops);

// 42 → "4 2", -42 → "-4 2", 7 → "7".
std::string spaced_digits(std::int64_t value);

// a + b added digit by digit with every carry dropped (27 + 15 → 32, 95 + 17 → 2): the
// systematic slip of `loom-prep arithmetic --sft-noise-carry` demonstrations. a, b >= 0.
std::int64_t add_without_carry(std::int64_t a, std::int64_t b);

// Undoes either rendering: "4 2" and "42" → 42; throws std::invalid_argument otherwise.
std::int64_t parse_arithmetic_answer(std::string_view answer);

// One problem, its result computed exactly; throws std::invalid_argument for an unknown op.
ArithmeticProblem make_arithmetic_problem(std::int64_t a, char op, std::int64_t b, bool spaced = false);

// Throws std::invalid_argument when train + validation exceeds the number of distinct
// problems, or max_operand is outside [0, 10^9].
ArithmeticSplit arithmetic_problems(const ArithmeticOptions& options);

// As prompt records (JsonlFormat::Prompt, answer set), ready for tokenize_records or write_jsonl.
std::vector<JsonlRecord> arithmetic_records(std::span<const ArithmeticProblem> problems);

}  // namespace loom::io
