// xpu matmul and mixture-of-experts.

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "backends/xpu/ops/launch.h"
#include "backends/xpu/xpu_backend.h"

namespace pagoda::xpu {

namespace {
constexpr size_t kTile = 8;    // MM_TILE in kernels/matmul.cl
constexpr size_t kLws = 64;    // MM_LWS
constexpr size_t kSgLws = 16;  // the subgroup of matmul_sg16 and matmul_vec_sg16
// matmul_vec: MV_LANES, MV_TILE (its rows per work-group come from its reqd_work_group_size, as
// matmul_vec_sg16's do: one subgroup per row).
constexpr size_t kVecLanes = 32;
constexpr size_t kVecTile = 8;
}  // namespace

XpuOps::XpuOps(XpuRuntime& rt) : rt_(rt) {
  std::string why;
  onednn_ = OneDnnMatmul::create(rt_, why);
  if (onednn_ == nullptr && OneDnnMatmul::requested()) {
    std::fprintf(stderr, "warning: PAGODA_XPU_ONEDNN=1, but oneDNN is not used: %s\n", why.c_str());
  }
}

void XpuOps::gemm(cl_mem out, uint64_t out_off, cl_mem x, uint64_t x_off, int64_t m, cl_mem w, uint64_t w_off,
                  DType wtype, int64_t n, int64_t k, const Tensor* bias) {
  if (m == 0 || n == 0) return;
  if (onednn_ != nullptr && k > 0 &&
      onednn_->run(out, out_off, x, x_off, m, w, w_off, wtype, n, k, bias != nullptr ? mem_of(*bias) : nullptr,
                   bias != nullptr ? bias->byte_offset() : 0)) {
    return;
  }
  const uint64_t row_bytes = *dtype_row_bytes(wtype, k);
  // Unquantized rows that allow 16-byte loads take the streaming kernel.
  if ((wtype == DType::kF16 || wtype == DType::kBF16 || wtype == DType::kF32) && k % 8 == 0 && row_bytes % 16 == 0 &&
      w_off % 16 == 0 && x_off % 16 == 0) {
    // Intel GPUs stream the rows with subgroup block reads; other devices with 16-byte loads.
    const char* kernel = rt_.subgroup_paths() ? "matmul_vec_sg16" : "matmul_vec";
    const size_t lanes = rt_.subgroup_paths() ? kSgLws : kVecLanes;
    Launch launch(rt_, kernel);
    launch.mem(out).u64(out_off).mem(x).u64(x_off).mem(w).u64(w_off).u64(row_bytes);
    if (bias != nullptr) {
      launch.tensor(*bias).i32(1);
    } else {
      launch.mem(out).u64(out_off).i32(0);
    }
    launch.i32(weight_code(wtype)).i32(m).i32(n).i32(k);
    const size_t tiles = (static_cast<size_t>(m) + kVecTile - 1) / kVecTile;
    const size_t lws = rt_.required_work_group_size(kernel);
    const size_t rows = lws / lanes;
    const size_t groups = (static_cast<size_t>(n) + rows - 1) / rows;
    launch.run({tiles * lws, groups, 1}, {lws, 1, 1}, 2);
    return;
  }
  const bool sg = rt_.subgroup_paths();
  const size_t lws = sg ? kSgLws : kLws;
  Launch launch(rt_, sg ? "matmul_sg16" : "matmul");
  launch.mem(out).u64(out_off).mem(x).u64(x_off).mem(w).u64(w_off).u64(*dtype_row_bytes(wtype, k));
  if (bias != nullptr) {
    launch.tensor(*bias).i32(1);
  } else {
    launch.mem(out).u64(out_off).i32(0);
  }
  launch.i32(weight_code(wtype)).i32(m).i32(n).i32(k);
  size_t groups = static_cast<size_t>(n);
  if (!sg) {
    // About two 32-element chunks per item: a row of 576 gets 8 items, and a work-group 8 rows.
    const int64_t chunks = (k + 31) / 32;
    int64_t lanes = 1;
    while (lanes * 2 <= std::min<int64_t>(static_cast<int64_t>(kLws), chunks / 2))
      lanes *= 2;
    launch.i32(lanes);
    const auto rows = static_cast<size_t>(static_cast<int64_t>(kLws) / lanes);
    groups = (static_cast<size_t>(n) + rows - 1) / rows;
  }
  launch.run({groups * lws, (static_cast<size_t>(m) + kTile - 1) / kTile, 1}, {lws, 1, 1}, 2);
}

void XpuOps::matmul(Tensor& out, const Tensor& x, const Tensor& weight, const Tensor* bias) {
  const int64_t k = x.dim(-1);
  const int64_t n = weight.dim(0);
  const int64_t m = k == 0 ? out.numel() / std::max<int64_t>(1, n) : x.numel() / k;
  gemm(mem_of(out), out.byte_offset(), mem_of(x), x.byte_offset(), m, mem_of(weight), weight.byte_offset(),
       weight.dtype(), n, k, bias);
}

void XpuOps::moe_experts(Tensor& out, const Tensor& x, const Tensor& w_gate_up, const Tensor& w_down,
                         const Tensor& topk_weights, const Tensor& topk_ids, ActivationKind act) {
  const int64_t tokens = x.dim(0);
  const int64_t hidden = x.dim(1);
  const int64_t experts = w_gate_up.dim(0);
  const int64_t inter = w_gate_up.dim(1) / 2;
  const int64_t k = topk_ids.dim(1);
  const std::vector<int32_t> ids = read_back<int32_t>(rt_, topk_ids);
  const std::vector<float> tw = read_back<float>(rt_, topk_weights);
  // Routes: for each expert, the (token, slot) pairs it serves, in token order.
  std::vector<std::vector<int64_t>> routes(static_cast<size_t>(experts));
  for (int64_t i = 0; i < tokens * k; ++i) {
    if (ids[i] < 0 || ids[i] >= experts) {
      fail(ErrorCode::kInvalidArgument, "moe_experts: topk_ids[{}][{}] = {} is outside the {} experts", i / k, i % k,
           ids[i], experts);
    }
    routes[static_cast<size_t>(ids[i])].push_back(i);
  }
  const int64_t total = out.numel();
  Launch(rt_, "fill_zero").tensor(out).i64(total).run({static_cast<size_t>(total), 1, 1}, {256, 1, 1}, 1);
  if (tokens == 0 || hidden == 0) return;
  const uint64_t gate_up_bytes = *dtype_row_bytes(w_gate_up.dtype(), hidden) * static_cast<uint64_t>(2 * inter);
  const uint64_t down_bytes = *dtype_row_bytes(w_down.dtype(), inter) * static_cast<uint64_t>(hidden);
  for (int64_t e = 0; e < experts; ++e) {
    const auto& route = routes[static_cast<size_t>(e)];
    if (route.empty()) continue;
    const auto count = static_cast<int64_t>(route.size());
    std::vector<int32_t> route_tokens(route.size());
    std::vector<float> route_weights(route.size());
    for (size_t r = 0; r < route.size(); ++r) {
      route_tokens[r] = static_cast<int32_t>(route[r] / k);
      route_weights[r] = tw[static_cast<size_t>(route[r])];
    }
    const Tensor dev_tokens = upload_vector(rt_, route_tokens, DType::kI32);
    const Tensor dev_weights = upload_vector(rt_, route_weights, DType::kF32);
    Tensor xs = scratch(rt_, Shape{count, hidden}, DType::kF32);
    gather_rows(xs, x, dev_tokens);
    Tensor gate_up = scratch(rt_, Shape{count, 2 * inter}, DType::kF32);
    gemm(mem_of(gate_up), 0, mem_of(xs), 0, count, mem_of(w_gate_up),
         w_gate_up.byte_offset() + static_cast<uint64_t>(e) * gate_up_bytes, w_gate_up.dtype(), 2 * inter, hidden,
         nullptr);
    Tensor h = scratch(rt_, Shape{count, inter}, DType::kF32);
    act_and_mul(h, gate_up, act);
    Tensor y = scratch(rt_, Shape{count, hidden}, DType::kF32);
    gemm(mem_of(y), 0, mem_of(h), 0, count, mem_of(w_down),
         w_down.byte_offset() + static_cast<uint64_t>(e) * down_bytes, w_down.dtype(), hidden, inter, nullptr);
    Launch(rt_, "moe_accumulate")
        .tensor(out)
        .tensor(y)
        .tensor(dev_tokens)
        .tensor(dev_weights)
        .i32(count)
        .i32(hidden)
        .run({static_cast<size_t>(hidden), 1, 1}, {0, 0, 0}, 1);
  }
}

}  // namespace pagoda::xpu
