#pragma once

// The xpu backend: OpenCL devices, aimed at Intel GPUs (Arc, Flex, Max) and correct on any
// conformant OpenCL 1.2+ device (CI runs it on PoCL; it also runs on NVIDIA's OpenCL).
//
// Memory is one OpenCL buffer per allocation; copies to and from the host are blocking, so a
// host tensor may be freed as soon as copy() returns. Kernels are enqueued on one in-order
// queue and run asynchronously; synchronize() waits for them. Ops that read indices coming from
// requests (token ids, positions, slots, block tables, lengths, expert ids) read those small
// tensors back and check them on the host first, so a bad batch is an Error, never a wild read;
// the kernels clamp indices as well.

#include <memory>
#include <string>

#include "backend/backend.h"
#include "backends/xpu/onednn_matmul.h"
#include "backends/xpu/xpu_runtime.h"

namespace pagoda::xpu {

class XpuOps final : public BackendOps {
 public:
  explicit XpuOps(XpuRuntime& rt);

  void embedding(Tensor& out, const Tensor& ids, const Tensor& table) override;
  void rms_norm(Tensor& out, const Tensor& x, const Tensor& weight, float eps, float weight_offset) override;
  void fused_add_rms_norm(Tensor& x, Tensor& residual, const Tensor& weight, float eps, float weight_offset) override;
  void layer_norm(Tensor& out, const Tensor& x, const Tensor& weight, const Tensor* bias, float eps) override;
  void rotary_embedding(const Tensor& positions, Tensor& query, Tensor* key, int64_t head_size,
                        const Tensor& cos_sin_cache, bool is_neox) override;
  void act_and_mul(Tensor& out, const Tensor& x, ActivationKind act) override;
  void activation(Tensor& out, const Tensor& x, ActivationKind act) override;
  void matmul(Tensor& out, const Tensor& x, const Tensor& weight, const Tensor* bias) override;
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

  // matmul over raw buffers (the MoE experts multiply slices of one weight tensor).
  void gemm(cl_mem out, uint64_t out_off, cl_mem x, uint64_t x_off, int64_t m, cl_mem w, uint64_t w_off, DType wtype,
            int64_t n, int64_t k, const Tensor* bias);

 private:
  XpuRuntime& rt_;
  std::unique_ptr<OneDnnMatmul> onednn_;  // PAGODA_XPU_ONEDNN=1 on an Intel GPU, else null
};

class XpuBackend final : public Backend {
 public:
  explicit XpuBackend(int index) : rt_(index), ops_(rt_) {}

  [[nodiscard]] Device device() const override { return rt_.device(); }
  [[nodiscard]] std::string name() const override;
  [[nodiscard]] std::shared_ptr<Storage> allocate(uint64_t nbytes) override { return rt_.allocate(nbytes); }
  [[nodiscard]] uint64_t total_memory() const override { return rt_.caps().global_memory; }
  [[nodiscard]] uint64_t free_memory() const override;
  void copy(Tensor& dst, const Tensor& src) override;
  void synchronize() override;
  [[nodiscard]] bool supports(OpKind op, DType dtype) const override;
  [[nodiscard]] BackendOps& ops() override { return ops_; }
  [[nodiscard]] std::vector<KernelTiming> take_kernel_profile() override { return rt_.profile(); }

  [[nodiscard]] XpuRuntime& runtime() { return rt_; }

 private:
  XpuRuntime rt_;
  XpuOps ops_;
};

// The backend of device xpu:index (created on first use, then kept for the process).
[[nodiscard]] Backend& xpu_backend(int index);

// The kernel code of a weight dtype (WT_* in kernels/dequant.cl), or -1 if unsupported.
[[nodiscard]] int weight_code(DType t);

}  // namespace pagoda::xpu
