#pragma once

// The op contract, caller side: every op pagoda's models run. Each function checks its
// arguments (shapes, dtypes, contiguity, one device) and throws Error(kInvalidArgument) naming
// the op and the tensor, or Error(kUnsupported) when the device's backend lacks the op for that
// dtype; then it runs the op on the backend of the tensors' device (backend_for).

#include "ops/activation.h"
#include "ops/attention.h"
#include "ops/cache.h"
#include "ops/elementwise.h"
#include "ops/embedding.h"
#include "ops/gather.h"
#include "ops/matmul.h"
#include "ops/moe.h"
#include "ops/norm.h"
#include "ops/rotary.h"
#include "ops/sampling.h"
