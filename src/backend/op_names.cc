#include "backend/backend_ops.h"

namespace pagoda {

const char* op_name(OpKind op) {
  switch (op) {
    case OpKind::kEmbedding: return "embedding";
    case OpKind::kRmsNorm: return "rms_norm";
    case OpKind::kFusedAddRmsNorm: return "fused_add_rms_norm";
    case OpKind::kLayerNorm: return "layer_norm";
    case OpKind::kRotaryEmbedding: return "rotary_embedding";
    case OpKind::kSiluAndMul: return "silu_and_mul";
    case OpKind::kGeluAndMul: return "gelu_and_mul";
    case OpKind::kGeluTanhAndMul: return "gelu_tanh_and_mul";
    case OpKind::kGelu: return "gelu";
    case OpKind::kMatmul: return "matmul";
    case OpKind::kAdd: return "add";
    case OpKind::kScale: return "scale";
    case OpKind::kSoftcap: return "softcap";
    case OpKind::kReshapeAndCache: return "reshape_and_cache";
    case OpKind::kCopyBlocks: return "copy_blocks";
    case OpKind::kSwapBlocks: return "swap_blocks";
    case OpKind::kPagedAttention: return "paged_attention";
    case OpKind::kPrefillAttention: return "prefill_attention";
    case OpKind::kArgmax: return "argmax";
    case OpKind::kTopkSoftmax: return "topk_softmax";
    case OpKind::kMoeExperts: return "moe_experts";
    case OpKind::kGatherRows: return "gather_rows";
    case OpKind::kCount: break;
  }
  return "unknown";
}

}  // namespace pagoda
