// The BPE merge step: a table of ranked merges (pair of token ids → merged token id) and the
// two ways of applying it to one pre-token's symbols.
//
// merge_lowest_rank_first is GPT-2's bpe() written plainly: find the lowest-ranked adjacent
// pair, merge every occurrence left to right, repeat. It is quadratic in the word length.
// merge_with_heap is the fast path for long words (a megabyte of letters is one pre-token):
// a min-heap of (rank, position) over a linked list, O(n log n). The two agree whenever
// every merge ranks after the merges that made its two parts, which holds for every
// trained vocabulary (GPT-2's, Hugging Face's, BpeTrainer's); the tests check this.
//
// Thread safety: a MergeTable is immutable after building; the merge functions only touch
// the vector they are given.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace loom::io {

struct MergeRule {
  std::int32_t rank;
  std::int32_t merged;
};

class MergeTable {
 public:
  struct Entry {
    std::int32_t left;
    std::int32_t right;
    std::int32_t merged;
  };

  // Adds (left, right) → merged with the next rank. Returns false, changing nothing, when
  // the pair already has a rule (the earlier, lower rank wins, as in Hugging Face).
  bool add(std::int32_t left, std::int32_t right, std::int32_t merged);
  // The rule for the adjacent pair (left, right), or nullptr.
  const MergeRule* find(std::int32_t left, std::int32_t right) const;

  std::size_t size() const { return entries_.size(); }
  // Rules in rank order (entries()[r] has rank r).
  const std::vector<Entry>& entries() const { return entries_; }

 private:
  std::size_t slot_of(std::uint64_t key) const;
  void grow();

  // Open addressing with linear probing; kEmptyKey marks a free slot.
  std::vector<std::uint64_t> keys_;
  std::vector<MergeRule> rules_;
  std::vector<Entry> entries_;
};

// GPT-2's reference algorithm; `symbols` holds token ids and is rewritten in place.
void merge_lowest_rank_first(const MergeTable& table, std::vector<std::int32_t>& symbols);
// The heap-based equivalent for long words.
void merge_with_heap(const MergeTable& table, std::vector<std::int32_t>& symbols);
// Picks one of the two by length.
void apply_merges(const MergeTable& table, std::vector<std::int32_t>& symbols);

}  // namespace loom::io
