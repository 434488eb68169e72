// Token-level reinforcement-learning math of the PPO and GRPO trainers: generalised advantage
// estimation, advantage whitening, the clipped policy and value losses, per-token KL
// estimators, the adaptive KL coefficient, and GRPO's group-normalised advantages and loss.
// Plain CPU functions on host arrays; the trainers compute per-token log-probabilities and
// values with the model, call these, and feed the returned gradients into its backward pass.
//
// Conventions shared by every function here:
// - Token arrays are row-major [B, T] (B sequences of T tokens). The mask is uint8 [B, T]
//   (the token store's loss-mask type): nonzero = a generated token that counts.
// - Losses are TOKEN means over all unmasked tokens of the whole batch (N = their count), not
//   a mean of per-sequence means: every generated token weighs the same, whatever the length
//   of its sequence (DAPO's choice for GRPO; TRL's for PPO). Gradients are those of that
//   mean, so masked tokens get gradient 0. N = 0 throws.
// - Inputs are f32; sums, exponentials and logs are evaluated in f64.
// - Output spans are OVERWRITTEN (unlike Backend backward ops, which add). Gradient spans
//   may be empty to skip them.
// - Mismatched lengths, beta <= 0, a group size not dividing the batch, and other bad
//   arguments throw std::invalid_argument naming the argument and what was expected.
//
// Ownership: nothing is retained, except the state of AdaptiveKlController. Threads and ranks:
// pure functions (the controller: one owner); nothing communicates, so under data
// parallelism whitening and the means are per rank unless the trainer reduces them itself.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace loom::align {

// GAE (Schulman et al. 2016) per sequence, over the unmasked positions only. With
// t_1 < … < t_n the unmasked positions of a row and V(t_{n+1}) the bootstrap value:
//   δ_k = r(t_k) + γ V(t_{k+1}) - V(t_k),   A(t_k) = δ_k + γλ A(t_{k+1}),  A(t_{n+1}) = 0
//   returns(t_k) = A(t_k) + V(t_k)
// so masked positions (prompt, padding) are skipped as if the row were compacted; their
// advantage and return are 0. values is [B, T+1] (the last column is the bootstrap value of
// the state after the row, for truncated rows) or [B, T] (bootstrap 0: the row ended).
// rewards, mask, advantages, returns: [B, T]; seq_len = T.
void gae(std::span<const float> rewards, std::span<const float> values, std::span<const std::uint8_t> mask,
         std::size_t seq_len, double gamma, double lambda, std::span<float> advantages, std::span<float> returns);

// In place over the unmasked entries of the whole batch: a ← (a - mean) / sqrt(var + eps),
// var the UNBIASED (n - 1) variance (TRL's masked_whiten); masked entries become 0. Needs at
// least 2 unmasked entries.
void whiten(std::span<float> advantages, std::span<const std::uint8_t> mask, double eps = 1e-8);

struct PolicyLossStats {
  double loss = 0;
  double clip_fraction = 0;  // fraction of unmasked tokens whose clipped term is taken (gradient 0)
  double approx_kl = 0;      // k3 of old vs new: mean of (ρ - 1) - log ρ, ρ = exp(logp_new - logp_old)
};

// PPO clipped surrogate, token-mean over unmasked tokens, ρ = exp(logp_new - logp_old):
//   loss_t = max(-A ρ, -A clip(ρ, 1-ε, 1+ε))
//   ∂loss/∂logp_new_t = -A ρ / N where the first term is the larger (or they tie), else 0.
// advantages are per token, [B, T] like the log-probs.
PolicyLossStats ppo_policy_loss(std::span<const float> logp_new, std::span<const float> logp_old,
                                std::span<const float> advantages, std::span<const std::uint8_t> mask,
                                double clip_eps, std::span<float> d_logp_new);

struct ValueLossStats {
  double loss = 0;
  double clip_fraction = 0;  // fraction of unmasked tokens where the clipped error is the larger
};

// PPO clipped value loss, token-mean: with v_c = v_old + clip(v - v_old, -ε, ε),
//   loss_t = 0.5 · max((v - R)², (v_c - R)²)
//   ∂loss/∂v_t = (v - R)/N where the unclipped error is the larger (or they tie), else
//   (v_c - R)/N if |v - v_old| <= ε, else 0.
ValueLossStats ppo_value_loss(std::span<const float> values_new, std::span<const float> values_old,
                              std::span<const float> returns, std::span<const std::uint8_t> mask, double clip_eps,
                              std::span<float> d_values);

// Per-token KL estimators of KL(π ‖ π_ref) on samples from π (Schulman, "Approximating KL
// divergence"), with d = ∂kl/∂logp; kl, d_logp same length as logp (d_logp may be empty):
//   k1 = logp - logp_ref                           d = 1
//   k3 = exp(logp_ref - logp) - (logp_ref - logp) - 1   d = 1 - exp(logp_ref - logp)
// k3 is non-negative and unbiased; k1 is unbiased but can be negative per token.
void kl_k1(std::span<const float> logp, std::span<const float> logp_ref, std::span<float> kl,
           std::span<float> d_logp);
void kl_k3(std::span<const float> logp, std::span<const float> logp_ref, std::span<float> kl,
           std::span<float> d_logp);

// Adaptive KL penalty coefficient (Ziegler et al. 2019): after a rollout of n_steps samples
// whose measured KL is `kl`,
//   coef ← coef · (1 + clip(kl / target - 1, -0.2, 0.2) · n_steps / horizon).
// State: the coefficient (checkpoint it with value()/set_value()). One owner thread.
class AdaptiveKlController {
 public:
  // Throws std::invalid_argument if init_coef < 0, target <= 0 or horizon <= 0.
  AdaptiveKlController(double init_coef, double target, double horizon);
  void update(double kl, std::int64_t n_steps);
  double value() const { return coef_; }
  void set_value(double coef) { coef_ = coef; }

 private:
  double coef_, target_, horizon_;
};

// GRPO group-normalised advantages (Shao et al. 2024): rewards are [P · G], G consecutive
// completions per prompt; per group, a_i = (r_i - mean) / (std + eps) with std the
// POPULATION standard deviation (divide by G, torch's unbiased=False), so a group of 1 or of
// equal rewards gets advantages 0 rather than NaN.
void grpo_advantages(std::span<const float> rewards, std::size_t group_size, double eps,
                     std::span<float> advantages);

struct GrpoLossStats {
  double loss = 0;
  double clip_fraction = 0;  // as PolicyLossStats::clip_fraction
  double kl = 0;             // token-mean k3 of π vs π_ref
};

// GRPO loss, token-mean over unmasked tokens; seq_advantages is [B], one per sequence,
// broadcast to its T tokens; log-probs and mask are [B, T]:
//   loss_t = max(-A ρ, -A clip(ρ, 1-ε, 1+ε)) + β · k3(logp_new_t, logp_ref_t)
//   ∂loss/∂logp_new_t = (surrogate part as ppo_policy_loss) + β (1 - exp(logp_ref - logp_new)) / N
// beta = 0 turns the KL term off; beta < 0 throws.
GrpoLossStats grpo_loss(std::span<const float> logp_new, std::span<const float> logp_old,
                        std::span<const float> logp_ref, std::span<const float> seq_advantages,
                        std::span<const std::uint8_t> mask, double clip_eps, double beta,
                        std::span<float> d_logp_new);

}  // namespace loom::align
