// ExportModel: a whole compressed model in memory, the one input of the GGUF and
// compressed-tensors safetensors writers (gguf.h, compressed_tensors.h). loom-quantize and
// loom-ckpt build it from a quantized checkpoint; tests build it from random weights.
//
// Every parameter of the model with its LM head is one ExportTensor under its loom name
// (core/model/parameter_layout.h) and global shape, holding either dense f32 values
// (embeddings, norms, biases, the head, linears left unquantized) or a QuantizedMatrix
// (core/quant/quantized.h) of the same [out, in] shape — never both.
//
// Ownership: plain values; the writers only read them. Safe to share between threads for
// reading. No MPI: a writer runs on one rank with the gathered model.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/model/model_config.h"
#include "core/quant/quantized.h"

namespace loom::compress {

struct ExportTensor {
  std::string name;                               // loom parameter name, e.g. "layers.0.attn.qkv.weight"
  std::vector<std::int64_t> shape;                // global loom shape ([out, in] for linears)
  std::vector<float> values;                      // dense f32, row-major; empty when quantized
  std::optional<quant::QuantizedMatrix> quantized;  // [out, in] codes; nullopt when dense

  std::int64_t numel() const;
  // The tensor's f32 values: `values`, or the quantized matrix dequantized (scale·(code − zero)).
  std::vector<float> dense() const;
};

struct ExportModel {
  model::ModelConfig config;
  std::vector<ExportTensor> tensors;  // every parameter of the model (LM head), loom order
  // What produced the model, e.g. {"method": "gptq", "scheme": "int4-g128", "sparsity": "2:4"}.
  // Written into both formats as provenance; "sparsity" (a structure string such as "2:4" or
  // "unstructured", or an object with "structure") turns on compressed-tensors' sparsity_config.
  nlohmann::json quantization;
  std::string name;  // GGUF general.name; empty: "loom-<family>"

  // Throws std::invalid_argument naming the tensor when it is absent.
  const ExportTensor& tensor(const std::string& name) const;
  // Checks the model against its config: every parameter present once with its global shape,
  // no unknown tensor, exactly one of values / quantized, a quantized matrix only for a 2-D
  // tensor and with rows, cols and buffer sizes that match. Throws std::invalid_argument naming
  // the tensor and what was expected.
  void validate() const;
};

// True for the weight of a linear layer inside a block (qkv, attention out, MLP gate/up/down):
// the tensors quantization applies to. The LM head and embeddings are not block linears.
bool is_block_linear_weight(const std::string& loom_name);

}  // namespace loom::compress
