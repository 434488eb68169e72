#include "io/data/chat_template.h"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace loom::io {

namespace {

std::string plain_role(const std::string& role) {
  if (role == kRoleSystem) return "System";
  if (role == kRoleUser) return "User";
  if (role == kRoleAssistant) return "Assistant";
  throw std::invalid_argument("chat template: unknown role \"" + role + "\" (expected system, user or assistant)");
}

}  // namespace

void RenderedSequence::append(std::span<const std::int32_t> ids, bool loss) {
  tokens.insert(tokens.end(), ids.begin(), ids.end());
  loss_mask.insert(loss_mask.end(), ids.size(), loss ? 1 : 0);
}

ChatTemplate::ChatTemplate(Tokenizer tokenizer) : tokenizer_(std::move(tokenizer)) {
  const auto eos = tokenizer_.special_id(kEndOfText);
  if (!eos) {
    throw std::runtime_error("chat template: the tokenizer has no " + std::string(kEndOfText) +
                             " token, which loom needs to separate documents");
  }
  eos_ = *eos;
  const auto im_start = tokenizer_.special_id(kImStart);
  const auto im_end = tokenizer_.special_id(kImEnd);
  if (im_start && im_end) {
    style_ = Style::ChatML;
    im_start_ = *im_start;
    im_end_ = *im_end;
  } else {
    style_ = Style::PlainText;
  }
}

void ChatTemplate::render_message(const ChatMessage& message, RenderedSequence& out) const {
  const bool loss = message.role == kRoleAssistant;
  if (style_ == Style::ChatML) {
    const std::int32_t start[] = {im_start_};
    out.append(start, false);
    out.append(tokenizer_.encode(message.role + "\n"), false);
    out.append(tokenizer_.encode(message.content), loss);
    const std::int32_t end[] = {im_end_};
    out.append(end, loss);
    out.append(tokenizer_.encode("\n"), false);
  } else {
    // The space after the colon is encoded with the content so that a generation prompt
    // ending in "Assistant:" is a token prefix of every trained assistant turn.
    out.append(tokenizer_.encode(plain_role(message.role) + ":"), false);
    out.append(tokenizer_.encode(" " + message.content), loss);
    out.append(tokenizer_.encode("\n"), loss);
  }
}

RenderedSequence ChatTemplate::render_chat(std::span<const ChatMessage> messages) const {
  if (messages.empty()) throw std::invalid_argument("chat template: a chat needs at least one message");
  RenderedSequence out;
  for (const auto& message : messages) render_message(message, out);
  const bool eos_loss = style_ == Style::PlainText && messages.back().role == kRoleAssistant;
  const std::int32_t eos[] = {eos_};
  out.append(eos, eos_loss);
  return out;
}

RenderedSequence ChatTemplate::render_completion(std::string_view prompt, std::string_view completion) const {
  RenderedSequence out;
  out.append(tokenizer_.encode(prompt), false);
  out.append(tokenizer_.encode(completion), true);
  const std::int32_t eos[] = {eos_};
  out.append(eos, true);
  return out;
}

RenderedSequence ChatTemplate::render_text(std::string_view text) const {
  RenderedSequence out;
  out.append(tokenizer_.encode(text), true);
  const std::int32_t eos[] = {eos_};
  out.append(eos, true);
  return out;
}

RenderedSequence ChatTemplate::render_generation_prompt(std::span<const ChatMessage> messages) const {
  RenderedSequence out;
  for (const auto& message : messages) render_message(message, out);
  if (style_ == Style::ChatML) {
    const std::int32_t start[] = {im_start_};
    out.append(start, false);
    out.append(tokenizer_.encode(std::string(kRoleAssistant) + "\n"), false);
  } else {
    out.append(tokenizer_.encode("Assistant:"), false);
  }
  std::fill(out.loss_mask.begin(), out.loss_mask.end(), 0);
  return out;
}

}  // namespace loom::io
