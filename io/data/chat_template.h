// Turns records into token sequences with a per-token loss mask, the unit a token store
// holds. Two styles, picked from the tokenizer:
//
//   ChatML (the tokenizer has <|im_start|> and <|im_end|>), per message:
//     <|im_start|>{role}\n{content}<|im_end|>\n
//   Plain text (e.g. GPT-2's vocabulary, which lacks them), per message:
//     {Role}: {content}\n          Role = System, User or Assistant
//
// Every rendered sequence ends with <|endoftext|> (eos), so packed documents stay
// separated. Loss mask = 1 on the tokens the model is trained to produce:
//   chat        assistant content and its end marker (<|im_end|> in ChatML; the "\n" in
//               plain text, where the final eos after an assistant turn also has loss 1
//               because plain text has no other stop signal)
//   completion  encode(prompt) + encode(completion) + eos; loss on completion and eos
//   text        encode(text) + eos; loss everywhere
// Prompt and completion are encoded separately so the mask boundary is a token boundary.
//
// Ownership: holds a copy of the Tokenizer (a cheap shared value). Immutable; const
// methods are safe from several threads.
#pragma once

#include "io/data/jsonl.h"
#include "io/tokenizer/tokenizer.h"

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

namespace loom::io {

struct RenderedSequence {
  std::vector<std::int32_t> tokens;
  std::vector<std::uint8_t> loss_mask;  // same length; 1 = predict this token

  void append(std::span<const std::int32_t> ids, bool loss);
};

class ChatTemplate {
 public:
  enum class Style { ChatML, PlainText };

  // Throws std::runtime_error when the tokenizer has no <|endoftext|>.
  explicit ChatTemplate(Tokenizer tokenizer);

  Style style() const { return style_; }
  const Tokenizer& tokenizer() const { return tokenizer_; }

  RenderedSequence render_chat(std::span<const ChatMessage> messages) const;
  RenderedSequence render_completion(std::string_view prompt, std::string_view completion) const;
  RenderedSequence render_text(std::string_view text) const;
  // A prompt for generation (PPO/GRPO, evaluation): the messages, then the opening of an
  // assistant turn ("<|im_start|>assistant\n" or "Assistant:"); no eos; mask all 0.
  RenderedSequence render_generation_prompt(std::span<const ChatMessage> messages) const;

 private:
  void render_message(const ChatMessage& message, RenderedSequence& out) const;

  Tokenizer tokenizer_;
  Style style_;
  std::int32_t eos_;
  std::int32_t im_start_ = -1;
  std::int32_t im_end_ = -1;
};

}  // namespace loom::io
