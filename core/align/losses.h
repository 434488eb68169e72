// Pairwise preference losses of the alignment trainers: the Bradley–Terry reward-model loss
// and the DPO family (DPO, IPO, conservative DPO, SimPO). Plain CPU functions on host
// arrays: the trainers compute per-sequence scalars with the model (a reward head's score,
// a sequence's summed token log-probabilities), call these, and feed the returned gradients
// back into the model's backward pass.
//
// Conventions shared by every function here:
// - A batch is B pairs; element i of each "chosen" span pairs with element i of each
//   "rejected" span. Inputs are f32; every sum and transcendental is evaluated in f64.
// - The loss is the MEAN over the B pairs, and the gradients are those of that mean.
// - Gradient spans are OVERWRITTEN (unlike Backend backward ops, which add): these are
//   per-sequence scalars that the trainer turns into per-token seeds itself.
// - Mismatched span lengths, B = 0, beta <= 0 or out-of-range parameters throw
//   std::invalid_argument naming the argument and what was expected.
//
// Ownership: nothing is retained; outputs go into caller-owned spans. Threads and ranks:
// pure functions, safe to call concurrently on disjoint outputs; nothing communicates
// (a data-parallel trainer all-reduces the stats itself if it wants global ones).
#pragma once

#include <span>
#include <string_view>

namespace loom::align {

struct RmStats {
  double loss = 0;         // mean over pairs of -log σ(r_c - r_r - margin)
  double accuracy = 0;     // fraction of pairs with r_c > r_r (strict)
  double mean_margin = 0;  // mean of r_c - r_r (the margin argument not subtracted)
};

// Reward model, Bradley–Terry with an optional margin m:
//   loss_i = -log σ(r_c,i - r_r,i - m)
//   ∂loss/∂r_c,i = -σ(-(r_c,i - r_r,i - m)) / B,   ∂loss/∂r_r,i = -∂loss/∂r_c,i
RmStats rm_loss(std::span<const float> r_chosen, std::span<const float> r_rejected, float margin,
                std::span<float> d_chosen, std::span<float> d_rejected);

enum class PreferenceLoss {
  sigmoid,  // DPO (Rafailov et al. 2023)
  ipo,      // IPO (Azar et al. 2023)
  cdpo,     // conservative DPO: DPO with label smoothing ε
  simpo,    // SimPO (Meng et al. 2024): reference-free, length-normalised
};

// "sigmoid" | "ipo" | "cdpo" | "simpo"; anything else throws std::invalid_argument listing
// the valid names.
PreferenceLoss parse_preference_loss(std::string_view name);
std::string_view preference_loss_name(PreferenceLoss kind);

struct PreferenceParams {
  double label_smoothing = 0;  // ε of cdpo, in [0, 0.5]; ignored by the other kinds
  double simpo_gamma = 0;      // γ of simpo, the target reward margin; ignored by the others
};

// Per pair: summed log-probabilities of the chosen / rejected completion under the policy
// (πc, πr) and under the frozen reference model (ρc, ρr), and the completion lengths in
// tokens (Lc, Lr > 0). simpo needs the lengths and ignores the reference spans (they may be
// empty); the other kinds need the reference spans and ignore the lengths.
struct PreferenceInputs {
  std::span<const float> policy_chosen;
  std::span<const float> policy_rejected;
  std::span<const float> reference_chosen;
  std::span<const float> reference_rejected;
  std::span<const int> length_chosen;
  std::span<const int> length_rejected;
};

// Gradients of the mean loss w.r.t. πc and πr, [B] each. The reference gets none: it is frozen.
struct PreferenceGrads {
  std::span<float> policy_chosen;
  std::span<float> policy_rejected;
};

struct PreferenceStats {
  double loss = 0;             // mean over pairs
  double reward_chosen = 0;    // mean implicit reward of the chosen completions
  double reward_rejected = 0;  // mean implicit reward of the rejected completions
  double reward_margin = 0;    // mean of reward_chosen - reward_rejected
  double accuracy = 0;         // fraction of pairs with reward_chosen > reward_rejected
};

// With h = (πc - ρc) - (πr - ρr), the DPO log-ratio difference, per pair:
//   sigmoid: loss = -log σ(βh)                       ∂/∂h = -β σ(-βh)
//   ipo:     loss = (h - 1/(2β))²                    ∂/∂h = 2 (h - 1/(2β))
//   cdpo:    loss = -(1-ε) log σ(βh) - ε log σ(-βh)  ∂/∂h = -β [(1-ε) σ(-βh) - ε σ(βh)]
//   and ∂h/∂πc = 1, ∂h/∂πr = -1. Implicit rewards: β(πc - ρc) and β(πr - ρr).
//   simpo:   z = β (πc/Lc - πr/Lr) - γ,  loss = -log σ(z),  ∂/∂z = -σ(-z),
//            ∂z/∂πc = β/Lc, ∂z/∂πr = -β/Lr. Implicit rewards: β πc/Lc and β πr/Lr.
// Every gradient is divided by B (the loss is the batch mean).
PreferenceStats preference_loss(PreferenceLoss kind, double beta, const PreferenceParams& params,
                                const PreferenceInputs& inputs, const PreferenceGrads& grads);

}  // namespace loom::align
