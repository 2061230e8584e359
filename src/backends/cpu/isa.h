#pragma once

// What the CPU kernels may use beyond what the CPU reports: PAGODA_CPU_ISA=avx2 holds every family
// to its AVX2 kernels, PAGODA_CPU_ISA=avx512 to AVX-512 without AMX (for comparing kernels on one
// machine); unset, or anything else, leaves them all to the CPU. And the tile state AMX needs.

#include <cstdlib>
#include <cstring>

#if defined(__linux__) && defined(__x86_64__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace pagoda::cpu {

enum class IsaLimit { kNone, kAvx512, kAvx2 };

// PAGODA_CPU_ISA, read once.
[[nodiscard]] inline IsaLimit isa_limit() {
  static const IsaLimit limit = [] {
    const char* isa = std::getenv("PAGODA_CPU_ISA");
    if (isa == nullptr) return IsaLimit::kNone;
    if (std::strcmp(isa, "avx2") == 0) return IsaLimit::kAvx2;
    if (std::strcmp(isa, "avx512") == 0) return IsaLimit::kAvx512;
    return IsaLimit::kNone;
  }();
  return limit;
}

// Whether Linux lets this process use the AMX tile registers: it hands their state out only to
// processes that ask (ARCH_REQ_XCOMP_PERM for XFEATURE_XTILEDATA); without it the first tile
// instruction faults. Asked once; call only on a CPU with AMX-TILE.
[[nodiscard]] inline bool amx_tile_state_granted() {
#if defined(__linux__) && defined(__x86_64__)
  static const bool granted = [] {
    constexpr long kReqXcompPerm = 0x1023;
    constexpr long kXtileData = 18;
    return syscall(SYS_arch_prctl, kReqXcompPerm, kXtileData) == 0;
  }();
  return granted;
#else
  return false;
#endif
}

}  // namespace pagoda::cpu
