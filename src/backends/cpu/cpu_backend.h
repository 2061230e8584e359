#pragma once

// The CPU backend: host memory, kernels for float32 activations, and a persistent thread pool.
// Weights may be f32, f16, bf16 or any GGUF block type the dequantizers handle; they are
// dequantized a few rows at a time into a thread-local buffer, never copied whole. KV caches may
// be f32, f16 or bf16.
//
// Ops run synchronously on the calling thread (helped by the pool), so synchronize() has nothing
// to wait for. The kernels trust the shapes and dtypes the front end (src/ops/) checked, but they
// check every index they read from a tensor (token ids, positions, slots, block tables, lengths):
// those come from requests, and a bad one must become an Error, never a read out of bounds.

#include <memory>
#include <string>

#include "backend/backend.h"
#include "backends/cpu/host_pool.h"
#include "backends/cpu/quant/packed_weights.h"
#include "backends/cpu/thread_pool.h"

namespace pagoda::cpu {

class CpuOps final : public BackendOps {
 public:
  explicit CpuOps(ThreadPool& pool) : pool_(pool) {}

  // See CpuBackend::set_quantized_activations.
  void set_quantized_activations(bool on) { quantize_activations_ = on; }
  [[nodiscard]] bool quantized_activations() const { return quantize_activations_; }
  [[nodiscard]] PackedWeights& packed_weights() { return packed_; }

  void embedding(Tensor& out, const Tensor& ids, const Tensor& table) override;
  void rms_norm(Tensor& out, const Tensor& x, const Tensor& weight, float eps, float weight_offset) override;
  void fused_add_rms_norm(Tensor& x, Tensor& residual, const Tensor& weight, float eps, float weight_offset) override;
  void layer_norm(Tensor& out, const Tensor& x, const Tensor& weight, const Tensor* bias, float eps) override;
  void rotary_embedding(const Tensor& positions, Tensor& query, Tensor* key, int64_t head_size,
                        const Tensor& cos_sin_cache, bool is_neox) override;
  void act_and_mul(Tensor& out, const Tensor& x, ActivationKind act) override;
  void activation(Tensor& out, const Tensor& x, ActivationKind act) override;
  void matmul(Tensor& out, const Tensor& x, const Tensor& weight, const Tensor* bias) override;
  void matmul_shared(const Tensor& x, std::span<const MatmulPart> parts) override;
  [[nodiscard]] bool matmul_shared_writes_strided_rows() const override { return true; }
  void add(Tensor& out, const Tensor& a, const Tensor& b) override;
  void scale(Tensor& x, float s) override;
  void softcap(Tensor& x, float cap) override;
  void reshape_and_cache(const Tensor& key, const Tensor& value, Tensor& key_cache, Tensor& value_cache,
                         const Tensor& slot_mapping) override;
  void copy_blocks(std::span<Tensor> key_caches, std::span<Tensor> value_caches, const Tensor& block_mapping) override;
  void swap_blocks(const Tensor& src, Tensor& dst, const Tensor& block_mapping) override;
  void paged_attention(Tensor& out, const Tensor& query, const Tensor& key_cache, const Tensor& value_cache,
                       int64_t num_kv_heads, const Tensor& block_tables, const Tensor& seq_lens, int64_t block_size,
                       int64_t max_seq_len, const AttentionParams& params) override;
  void prefill_attention(Tensor& out, const Tensor& query, const Tensor& key_cache, const Tensor& value_cache,
                         int64_t num_kv_heads, const Tensor& block_tables, const Tensor& cu_query_lens,
                         const Tensor& seq_lens, int64_t block_size, int64_t max_query_len,
                         const AttentionParams& params) override;
  void argmax(Tensor& out, const Tensor& logits) override;
  void topk_softmax(Tensor& topk_weights, Tensor& topk_ids, const Tensor& gating, bool renormalize) override;
  void moe_experts(Tensor& out, const Tensor& x, const Tensor& w_gate_up, const Tensor& w_down,
                   const Tensor& topk_weights, const Tensor& topk_ids, ActivationKind act) override;
  void gather_rows(Tensor& out, const Tensor& x, const Tensor& indices) override;

 private:
  // matmul with the output's rows ldo floats apart
  void matmul_rows(Tensor& out, int64_t ldo, const Tensor& x, const Tensor& weight, const Tensor* bias);

  ThreadPool& pool_;
  bool quantize_activations_ = false;
  PackedWeights packed_;  // repacked weights of the integer path
};

class CpuBackend final : public Backend {
 public:
  // `num_threads` <= 0: one per CPU this process may run on.
  explicit CpuBackend(int num_threads = 0);

  [[nodiscard]] Device device() const override { return cpu_device(); }
  [[nodiscard]] std::string name() const override { return "cpu"; }
  [[nodiscard]] std::shared_ptr<Storage> allocate(uint64_t nbytes) override;
  [[nodiscard]] uint64_t total_memory() const override;
  [[nodiscard]] uint64_t free_memory() const override;
  void copy(Tensor& dst, const Tensor& src) override;
  void synchronize() override {}
  [[nodiscard]] bool supports(OpKind op, DType dtype) const override;
  [[nodiscard]] BackendOps& ops() override { return ops_; }

  [[nodiscard]] ThreadPool& pool() { return pool_; }
  // The reuse list of large buffers (host_pool.h); null when pooling is off.
  [[nodiscard]] HostPool* buffer_pool() { return buffers_.get(); }

  // Off (the default): matmul over quantized weights dequantizes them and computes in float32,
  // agreeing with a float reference to rounding. On: activations are quantized to 8 bits per
  // 32-element block and multiplied in integer arithmetic (as llama.cpp does), several times
  // faster with a relative error of about 1/254 per activation element. Results stay
  // independent of the batch either way. Set it before running, not while ops run.
  void set_quantized_activations(bool on) { ops_.set_quantized_activations(on); }
  [[nodiscard]] bool quantized_activations() const { return ops_.quantized_activations(); }
  // Repacked copies of mapped weights for the integer path (quant/packed_weights.h).
  [[nodiscard]] PackedWeights& packed_weights() { return ops_.packed_weights(); }

 private:
  ThreadPool pool_;
  CpuOps ops_;
  std::shared_ptr<HostPool> buffers_;
};

// The process-wide CPU backend (created on first use).
[[nodiscard]] CpuBackend& cpu_backend();

}  // namespace pagoda::cpu
