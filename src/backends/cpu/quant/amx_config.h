#pragma once

// The AMX tile configuration (palette 1) that the AMX kernels load before their tile instructions
// (qdot_vnni.cc for int8, bf16dot.cc for bf16).

#include <cstdint>
#include <cstring>

namespace pagoda::cpu {

struct alignas(64) TileConfig {
  uint8_t palette = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};  // bytes per row of tile t
  uint8_t rows[16] = {};    // rows of tile t
};
static_assert(sizeof(TileConfig) == 64);

// `ldtilecfg` on the whole configuration. (Not GCC 12's _tile_loadconfig: its asm names only the
// first 8 bytes as read, so the compiler may drop the stores of the rest.) Only on a CPU with
// AMX-TILE whose process Linux has granted the tile state.
inline void load_tile_config(const TileConfig& cfg) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  __asm__ volatile("ldtilecfg %0" : : "m"(cfg));
#else
  (void)cfg;
#endif
}

// Loads `cfg` unless the thread's tiles already hold it: `ldtilecfg` costs about 90 ns here
// (`sttilecfg`, which reads the configuration back, about 10), against a few microseconds for a
// matmul task, and a decode step makes thousands of kernel calls. The tiles are therefore not
// released between calls; whatever else configures or releases them (another kernel family, a
// library) is seen here, as the configuration read back differs (all zero once released).
inline void use_tile_config(const TileConfig& cfg) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  TileConfig now;
  __asm__ volatile("sttilecfg %0" : "=m"(now));
  if (std::memcmp(&now, &cfg, sizeof now) == 0) return;
#endif
  load_tile_config(cfg);
}

}  // namespace pagoda::cpu
