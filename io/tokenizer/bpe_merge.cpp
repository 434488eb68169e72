#include "io/tokenizer/bpe_merge.h"

#include <queue>

namespace loom::io {
namespace {

constexpr std::uint64_t kEmptyKey = ~std::uint64_t{0};
// Below this many symbols the quadratic reference is faster than building a heap.
constexpr std::size_t kHeapThreshold = 48;

std::uint64_t pair_key(std::int32_t left, std::int32_t right) {
  return (std::uint64_t{static_cast<std::uint32_t>(left)} << 32) |
         std::uint64_t{static_cast<std::uint32_t>(right)};
}

std::uint64_t mix(std::uint64_t x) {  // splitmix64 finaliser
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

}  // namespace

std::size_t MergeTable::slot_of(std::uint64_t key) const {
  const std::size_t mask = keys_.size() - 1;
  std::size_t slot = mix(key) & mask;
  while (keys_[slot] != kEmptyKey && keys_[slot] != key) slot = (slot + 1) & mask;
  return slot;
}

void MergeTable::grow() {
  const std::size_t capacity = keys_.empty() ? 64 : keys_.size() * 2;
  keys_.assign(capacity, kEmptyKey);
  rules_.assign(capacity, MergeRule{0, 0});
  for (std::size_t rank = 0; rank < entries_.size(); ++rank) {
    const Entry& e = entries_[rank];
    const std::uint64_t key = pair_key(e.left, e.right);
    const std::size_t slot = slot_of(key);
    keys_[slot] = key;
    rules_[slot] = MergeRule{static_cast<std::int32_t>(rank), e.merged};
  }
}

bool MergeTable::add(std::int32_t left, std::int32_t right, std::int32_t merged) {
  if (find(left, right) != nullptr) return false;
  if ((entries_.size() + 1) * 2 > keys_.size()) {
    entries_.push_back({left, right, merged});
    grow();
    return true;
  }
  const std::uint64_t key = pair_key(left, right);
  const std::size_t slot = slot_of(key);
  keys_[slot] = key;
  rules_[slot] = MergeRule{static_cast<std::int32_t>(entries_.size()), merged};
  entries_.push_back({left, right, merged});
  return true;
}

const MergeRule* MergeTable::find(std::int32_t left, std::int32_t right) const {
  if (keys_.empty()) return nullptr;
  const std::uint64_t key = pair_key(left, right);
  const std::size_t slot = slot_of(key);
  return keys_[slot] == key ? &rules_[slot] : nullptr;
}

void merge_lowest_rank_first(const MergeTable& table, std::vector<std::int32_t>& symbols) {
  while (symbols.size() >= 2) {
    const MergeRule* best = nullptr;
    std::int32_t left = 0;
    std::int32_t right = 0;
    for (std::size_t i = 0; i + 1 < symbols.size(); ++i) {
      const MergeRule* rule = table.find(symbols[i], symbols[i + 1]);
      if (rule != nullptr && (best == nullptr || rule->rank < best->rank)) {
        best = rule;
        left = symbols[i];
        right = symbols[i + 1];
      }
    }
    if (best == nullptr) return;
    std::size_t write = 0;
    for (std::size_t i = 0; i < symbols.size();) {
      if (i + 1 < symbols.size() && symbols[i] == left && symbols[i + 1] == right) {
        symbols[write++] = best->merged;
        i += 2;
      } else {
        symbols[write++] = symbols[i++];
      }
    }
    symbols.resize(write);
  }
}

void merge_with_heap(const MergeTable& table, std::vector<std::int32_t>& symbols) {
  const auto n = static_cast<std::int32_t>(symbols.size());
  if (n < 2) return;
  // Each symbol keeps the index of its first byte; merged-away symbols become -1.
  std::vector<std::int32_t> prev(n);
  std::vector<std::int32_t> next(n);
  for (std::int32_t i = 0; i < n; ++i) {
    prev[i] = i - 1;
    next[i] = i + 1 < n ? i + 1 : -1;
  }
  struct Candidate {
    std::int32_t rank;
    std::int32_t pos;
    bool operator>(const Candidate& o) const {
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> heap;
  const auto push_pair = [&](std::int32_t pos) {
    if (pos < 0 || next[pos] < 0) return;
    if (const MergeRule* rule = table.find(symbols[pos], symbols[next[pos]])) {
      heap.push({rule->rank, pos});
    }
  };
  for (std::int32_t i = 0; i + 1 < n; ++i) push_pair(i);

  while (!heap.empty()) {
    const Candidate top = heap.top();
    heap.pop();
    const std::int32_t pos = top.pos;
    if (symbols[pos] < 0 || next[pos] < 0) continue;
    const std::int32_t right = next[pos];
    const MergeRule* rule = table.find(symbols[pos], symbols[right]);
    if (rule == nullptr || rule->rank != top.rank) continue;  // stale: a neighbour changed
    symbols[pos] = rule->merged;
    symbols[right] = -1;
    next[pos] = next[right];
    if (next[pos] >= 0) prev[next[pos]] = pos;
    push_pair(prev[pos]);
    push_pair(pos);
  }
  std::size_t write = 0;
  for (std::int32_t i = 0; i < n; ++i) {
    if (symbols[i] >= 0) symbols[write++] = symbols[i];
  }
  symbols.resize(write);
}

void apply_merges(const MergeTable& table, std::vector<std::int32_t>& symbols) {
  if (symbols.size() < kHeapThreshold) {
    merge_lowest_rank_first(table, symbols);
  } else {
    merge_with_heap(table, symbols);
  }
}

}  // namespace loom::io
