#include "io/data/arithmetic.h"

#include "io/data/fingerprint.h"

#include <algorithm>
#include <stdexcept>
#include <unordered_set>

namespace loom::io {

namespace {

constexpr std::int64_t kMaxOperandLimit = 1000000000;  // keeps every product within int64

// floor(r · n / 2^64): an unbiased-enough map of a 64-bit draw onto [0, n).
std::uint64_t scale(std::uint64_t r, std::uint64_t n) {
  return static_cast<std::uint64_t>((static_cast<unsigned __int128>(r) * n) >> 64);
}

}  // namespace

std::vector<char> parse_arithmetic_ops(std::string_view ops) {
  std::vector<char> out;
  std::size_t start = 0;
  while (start <= ops.size()) {
    const std::size_t comma = std::min(ops.find(',', start), ops.size());
    std::string_view item = ops.substr(start, comma - start);
    while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
    while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
    if (item.size() != 1 || std::string_view("+-*").find(item[0]) == std::string_view::npos) {
      throw std::invalid_argument("arithmetic ops \"" + std::string(ops) + "\": \"" + std::string(item) +
                                  "\" is not one of + - * (expected a comma-separated list such as +,-,*)");
    }
    if (std::find(out.begin(), out.end(), item[0]) != out.end()) {
      throw std::invalid_argument("arithmetic ops \"" + std::string(ops) + "\": \"" + std::string(item) +
                                  "\" appears twice");
    }
    out.push_back(item[0]);
    start = comma + 1;
  }
  return out;
}

std::string spaced_digits(std::int64_t value) {
  const std::string plain = std::to_string(value);
  std::string out;
  for (std::size_t i = 0; i < plain.size(); ++i) {
    if (i > 0 && plain[i - 1] != '-') out += ' ';
    out += plain[i];
  }
  return out;
}

std::int64_t add_without_carry(std::int64_t a, std::int64_t b) {
  if (a < 0 || b < 0) {
    throw std::invalid_argument("add_without_carry: operands must be non-negative, got " + std::to_string(a) + " and " +
                                std::to_string(b));
  }
  std::int64_t sum = 0, place = 1;
  while (a > 0 || b > 0) {
    sum += ((a % 10 + b % 10) % 10) * place;
    a /= 10;
    b /= 10;
    place *= 10;
  }
  return sum;
}

std::int64_t parse_arithmetic_answer(std::string_view answer) {
  std::string digits;
  for (char c : answer) {
    if (c != ' ') digits += c;
  }
  std::size_t used = 0;
  std::int64_t value = 0;
  try {
    value = std::stoll(digits, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (digits.empty() || used != digits.size()) {
    throw std::invalid_argument("arithmetic answer \"" + std::string(answer) +
                                "\" is not an integer (expected decimal digits, optionally spaced, such as 42 or 4 2)");
  }
  return value;
}

ArithmeticProblem make_arithmetic_problem(std::int64_t a, char op, std::int64_t b, bool spaced) {
  ArithmeticProblem problem{a, op, b, 0, {}, {}};
  switch (op) {
    case '+': problem.result = a + b; break;
    case '-': problem.result = a - b; break;
    case '*': problem.result = a * b; break;
    default:
      throw std::invalid_argument(std::string("make_arithmetic_problem: op '") + op + "' is not one of + - *");
  }
  const auto render = [spaced](std::int64_t value) { return spaced ? spaced_digits(value) : std::to_string(value); };
  problem.prompt = "Q: " + render(a) + " " + op + " " + render(b) + " = ?\nA:";
  problem.answer = render(problem.result);
  return problem;
}

ArithmeticSplit arithmetic_problems(const ArithmeticOptions& options) {
  if (options.max_operand < 0 || options.max_operand > kMaxOperandLimit) {
    throw std::invalid_argument("arithmetic: max_operand must be in [0, " + std::to_string(kMaxOperandLimit) +
                                "], got " + std::to_string(options.max_operand));
  }
  const std::vector<char> ops = parse_arithmetic_ops(options.ops);
  const auto operands = static_cast<std::uint64_t>(options.max_operand) + 1;
  const std::uint64_t space = ops.size() * operands * operands;
  const std::uint64_t needed = options.train + options.validation;
  if (needed > space) {
    throw std::invalid_argument("arithmetic: " + std::to_string(options.train) + " train + " +
                                std::to_string(options.validation) + " validation problems requested, but ops \"" +
                                options.ops + "\" with operands 0.." + std::to_string(options.max_operand) +
                                " give only " + std::to_string(space) + " distinct problems");
  }

  // Rejection sampling for every size keeps draw i a function of (seed, i) alone; even
  // needed == space costs only space · ln(space) draws.
  ArithmeticSplit split;
  split.validation.reserve(options.validation);
  split.train.reserve(options.train);
  std::unordered_set<std::uint64_t> seen;
  seen.reserve(needed);
  const std::uint64_t base = mix64(options.seed);
  for (std::uint64_t draw = 0; seen.size() < needed; ++draw) {
    const std::uint64_t index = scale(mix64(base + draw), space);
    if (!seen.insert(index).second) continue;
    const char op = ops[index % ops.size()];
    const std::uint64_t rest = index / ops.size();
    const auto a = static_cast<std::int64_t>(rest % operands);
    const auto b = static_cast<std::int64_t>(rest / operands);
    auto& side = split.validation.size() < options.validation ? split.validation : split.train;
    side.push_back(make_arithmetic_problem(a, op, b, options.spaced_digits));
  }
  return split;
}

std::vector<JsonlRecord> arithmetic_records(std::span<const ArithmeticProblem> problems) {
  std::vector<JsonlRecord> records;
  records.reserve(problems.size());
  for (std::size_t i = 0; i < problems.size(); ++i) {
    JsonlRecord record;
    record.format = JsonlFormat::Prompt;
    record.line = static_cast<std::int64_t>(i + 1);
    record.prompt = problems[i].prompt;
    record.answer = problems[i].answer;
    records.push_back(std::move(record));
  }
  return records;
}

}  // namespace loom::io
