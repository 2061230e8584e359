#include "ops/cache.h"

#include <fmt/format.h>

#include "backend/backend.h"
#include "ops/check.h"

namespace pagoda::ops {

namespace {

// A cache tensor: (num_blocks, num_kv_heads, block_size, head_size).
void check_cache(const detail::OpCheck& c, std::string_view name, const Tensor& t) {
  c.output(name, t);
  c.ndim(name, t, 4);
}

void check_mapping(const detail::OpCheck& c, const Tensor& block_mapping) {
  c.dtype("block_mapping", block_mapping, DType::kI64);
  c.ndim("block_mapping", block_mapping, 2);
  c.dim("block_mapping", block_mapping, 1, 2);
}

}  // namespace

void reshape_and_cache(const Tensor& key, const Tensor& value, Tensor& key_cache, Tensor& value_cache,
                       const Tensor& slot_mapping) {
  const detail::OpCheck c("reshape_and_cache", key_cache.device());
  check_cache(c, "key_cache", key_cache);
  check_cache(c, "value_cache", value_cache);
  c.shape("value_cache", value_cache, key_cache.shape());
  c.dtype("value_cache", value_cache, key_cache.dtype());
  c.input("key", key);
  c.input("value", value);
  c.dtype("key", key, DType::kF32);
  c.dtype("value", value, DType::kF32);
  c.ndim("key", key, 3);
  const int64_t tokens = key.dim(0);
  c.shape("key", key, Shape{tokens, key_cache.dim(1), key_cache.dim(3)});
  c.shape("value", value, key.shape());
  c.input("slot_mapping", slot_mapping);
  c.dtype("slot_mapping", slot_mapping, DType::kI64);
  c.shape("slot_mapping", slot_mapping, Shape{tokens});
  c.disjoint("key_cache", key_cache, "value_cache", value_cache);
  c.disjoint("key_cache", key_cache, "key", key);
  c.disjoint("key_cache", key_cache, "value", value);
  c.disjoint("value_cache", value_cache, "key", key);
  c.disjoint("value_cache", value_cache, "value", value);
  Backend& backend = backend_for(key_cache.device());
  c.supported(backend, OpKind::kReshapeAndCache, "key_cache", key_cache.dtype());
  backend.ops().reshape_and_cache(key, value, key_cache, value_cache, slot_mapping);
}

void copy_blocks(std::span<Tensor> key_caches, std::span<Tensor> value_caches, const Tensor& block_mapping) {
  if (key_caches.size() != value_caches.size()) {
    fail(ErrorCode::kInvalidArgument, "copy_blocks: {} key caches but {} value caches", key_caches.size(),
         value_caches.size());
  }
  const Device device = key_caches.empty() ? block_mapping.device() : key_caches[0].device();
  const detail::OpCheck c("copy_blocks", device);
  c.input("block_mapping", block_mapping);
  check_mapping(c, block_mapping);
  if (key_caches.empty()) return;
  const Tensor& first = key_caches[0];
  for (size_t i = 0; i < key_caches.size(); ++i) {
    const std::string k = fmt::format("key_caches[{}]", i);
    const std::string v = fmt::format("value_caches[{}]", i);
    check_cache(c, k, key_caches[i]);
    check_cache(c, v, value_caches[i]);
    c.dtype(k, key_caches[i], first.dtype());
    c.dim(k, key_caches[i], 0, first.dim(0));  // block ids are shared by the layers
    c.shape(v, value_caches[i], key_caches[i].shape());
    c.dtype(v, value_caches[i], first.dtype());
    c.disjoint(k, key_caches[i], v, value_caches[i]);
  }
  Backend& backend = backend_for(device);
  c.supported(backend, OpKind::kCopyBlocks, "key_caches[0]", first.dtype());
  backend.ops().copy_blocks(key_caches, value_caches, block_mapping);
}

void swap_blocks(const Tensor& src, Tensor& dst, const Tensor& block_mapping) {
  // The op runs on the device side of the pair; the host side and the mapping are host tensors.
  const Device device = src.device().kind != DeviceKind::kCpu ? src.device() : dst.device();
  const detail::OpCheck c("swap_blocks", device);
  if (src.defined() && dst.defined() && src.device() != dst.device() && src.device().kind != DeviceKind::kCpu &&
      dst.device().kind != DeviceKind::kCpu) {
    c.fail("src is on {} and dst on {}: one of them must be on the host or both on one device",
           device_name(src.device()), device_name(dst.device()));
  }
  const detail::OpCheck host("swap_blocks", cpu_device());
  (src.device() == device ? c : host).input("src", src);
  (dst.device() == device ? c : host).output("dst", dst);
  host.input("block_mapping", block_mapping);
  check_mapping(c, block_mapping);
  c.min_ndim("src", src, 1);
  c.shape("dst", dst, src.shape());
  c.dtype("dst", dst, src.dtype());
  c.disjoint("src", src, "dst", dst);
  Backend& backend = backend_for(device);
  c.supported(backend, OpKind::kSwapBlocks, "src", src.dtype());
  backend.ops().swap_blocks(src, dst, block_mapping);
}

}  // namespace pagoda::ops
