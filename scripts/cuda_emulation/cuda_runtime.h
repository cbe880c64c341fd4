// Host emulation of the CUDA runtime subset used by csrc/cuda (verification only).
// Blocks run one after another; the threads of a block run as ucontext fibers
// that switch at barriers, so __syncthreads(_or) and warp shuffles behave.
// EMU_ORDER=reverse runs the blocks of a launch, and the threads of a block
// between barriers, last to first: a kernel whose result depends on the order
// (one block reading what another writes in the same launch, a thread reading
// shared memory that another writes without a barrier between) then gives a
// different answer than in the default order.
#pragma once
#include <chrono>
#include <ucontext.h>
#include <csetjmp>
#include <cstdio>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <mutex>
#include <memory>
#include <stdexcept>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static
#define CUDART_VERSION 13000
#define cudaStreamNonBlocking 1

struct uint3 { unsigned x, y, z; };
struct dim3 {
  unsigned x, y, z;
  dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};
typedef enum cudaError { cudaSuccess = 0, cudaErrorInvalidValue = 1, cudaErrorMemoryAllocation = 2,
                         cudaErrorStreamCaptureInvalidated = 901 } cudaError_t;
enum cudaMemcpyKind { cudaMemcpyHostToDevice = 1, cudaMemcpyDeviceToHost = 2, cudaMemcpyDeviceToDevice = 3 };
enum cudaStreamCaptureMode { cudaStreamCaptureModeThreadLocal = 1 };
struct CUgraph_st { std::vector<std::function<void()>> ops; };
struct CUgraphExec_st { std::vector<std::function<void()>> ops; };
struct CUstream_st { bool capturing = false; CUgraph_st* graph = nullptr; };
typedef CUstream_st* cudaStream_t;
struct CUevent_st { std::chrono::steady_clock::time_point at; };
typedef CUevent_st* cudaEvent_t;
typedef CUgraph_st* cudaGraph_t;
typedef CUgraphExec_st* cudaGraphExec_t;
struct cudaDeviceProp { char name[256]; int major, minor; size_t totalGlobalMem; };
struct cudaFuncAttributes { int numRegs; };

namespace emu {
inline uint3 threadIdx_, blockIdx_;
inline dim3 blockDim_, gridDim_;
inline long long launches = 0, graph_launches = 0, bytes_allocated = 0;
inline size_t free_memory = std::getenv("EMU_FREE_MEMORY") ? std::strtoull(std::getenv("EMU_FREE_MEMORY"), nullptr, 10) : size_t(1) << 30;

struct Fiber { ucontext_t ctx; jmp_buf jb; std::unique_ptr<char[]> stack; bool started = false, done = false, waiting = false; };
inline ucontext_t start_ctx;
inline jmp_buf scheduler_jb;
inline std::vector<Fiber> fibers(1024);  // never resized: contexts must not move
inline int current = 0;
inline std::mutex serial;  // one emulated GPU: kernels from several host threads run one at a time
inline std::function<void()> body;
inline int pending_or = 0, last_or = 0;
inline uint64_t slots[1024];
inline const bool reverse_order = [] {
  const char* v = std::getenv("EMU_ORDER");
  return v && std::strcmp(v, "reverse") == 0;
}();
constexpr size_t kStack = 256 * 1024;

// A fiber lives for the whole process: entered once through swapcontext, then
// switched with _setjmp/_longjmp (no signal-mask system calls).
inline void fiber_main() {
  Fiber& self = fibers[current];
  if (!_setjmp(self.jb)) swapcontext(&self.ctx, &start_ctx);  // parked, ready for work
  for (;;) {
    body();
    Fiber& f = fibers[current];
    f.done = true;
    if (!_setjmp(f.jb)) _longjmp(scheduler_jb, 1);
  }
}
inline void barrier() {
  Fiber& f = fibers[current];
  f.waiting = true;
  if (!_setjmp(f.jb)) _longjmp(scheduler_jb, 1);
}
inline int barrier_or(int p) {
  pending_or |= (p != 0);
  barrier();
  return last_or;
}
template <typename T>
T shfl_down(T v, int offset) {
  static_assert(sizeof(T) <= 8, "");
  const int tid = int(threadIdx_.x);
  std::memcpy(&slots[tid], &v, sizeof(T));
  barrier();
  const int lane = tid & 31;
  T r;
  std::memcpy(&r, &slots[lane + offset < 32 ? tid + offset : tid], sizeof(T));
  barrier();
  return r;
}
// __ballot_sync over the emulated warp (all threads of the block must call it).
inline unsigned ballot(int p) {
  const int tid = int(threadIdx_.x);
  slots[tid] = (p != 0);
  barrier();
  const int first = tid & ~31;
  unsigned mask = 0;
  for (int l = 0; l < 32 && first + l < int(blockDim_.x); ++l)
    if (slots[first + l]) mask |= 1u << l;
  barrier();
  return mask;
}
inline void run_block(int threads) {
  for (int i = 0; i < threads; ++i) {
    Fiber& f = fibers[i];
    if (!f.started) {
      f.stack.reset(new char[kStack]);
      getcontext(&f.ctx);
      f.ctx.uc_stack.ss_sp = f.stack.get();
      f.ctx.uc_stack.ss_size = kStack;
      f.ctx.uc_link = nullptr;
      makecontext(&f.ctx, fiber_main, 0);
      current = i;
      swapcontext(&start_ctx, &f.ctx);
      f.started = true;
    }
    f.done = f.waiting = false;
  }
  pending_or = 0;
  for (;;) {
    for (int k = 0; k < threads; ++k) {
      const int i = reverse_order ? threads - 1 - k : k;
      Fiber& f = fibers[i];
      if (f.done || f.waiting) continue;
      current = i;
      threadIdx_ = uint3{unsigned(i), 0, 0};
      if (!_setjmp(scheduler_jb)) _longjmp(f.jb, 1);
    }
    int waiting = 0, done = 0;
    for (int i = 0; i < threads; ++i) { waiting += fibers[i].waiting; done += fibers[i].done; }
    if (done == threads) return;
    if (waiting + done != threads) std::abort();
    if (done > 0 && waiting > 0) {  // our kernels only exit block-uniformly before barriers
      fprintf(stderr, "emu: barrier reached by %d threads while %d exited\n", waiting, done);
      std::abort();
    }
    last_or = pending_or;
    pending_or = 0;
    for (int i = 0; i < threads; ++i) fibers[i].waiting = false;
  }
}
template <typename... Params, typename... Args>
void execute(void (*kernel)(Params...), dim3 grid, dim3 block, Args... args) {
  if (block.y != 1 || block.z != 1 || block.x > 1024 || grid.y > 65535 || grid.z > 65535 || grid.x == 0)
    throw std::runtime_error("emu: bad launch configuration");
  const std::lock_guard<std::mutex> lock(serial);
  ++launches;
  gridDim_ = grid;
  blockDim_ = block;
  const uint64_t blocks = uint64_t(grid.x) * grid.y * grid.z;
  for (uint64_t k = 0; k < blocks; ++k) {
    const uint64_t b = reverse_order ? blocks - 1 - k : k;
    blockIdx_ = uint3{unsigned(b % grid.x), unsigned(b / grid.x % grid.y), unsigned(b / (uint64_t(grid.x) * grid.y))};
    body = [&] { kernel(args...); };
    run_block(int(block.x));
  }
}
template <typename... Params, typename... Args>
void launch(void (*kernel)(Params...), dim3 grid, dim3 block, cudaStream_t stream, Args... args) {
  if (stream && stream->capturing)
    stream->graph->ops.push_back([=] { execute(kernel, grid, block, args...); });
  else
    execute(kernel, grid, block, args...);
}
inline cudaError_t last_error = cudaSuccess;
}  // namespace emu

#define threadIdx (::emu::threadIdx_)
#define blockIdx (::emu::blockIdx_)
#define blockDim (::emu::blockDim_)
#define gridDim (::emu::gridDim_)

inline void __syncthreads() { emu::barrier(); }
inline int __syncthreads_or(int p) { return emu::barrier_or(p); }
inline unsigned __ballot_sync(unsigned, int p) { return emu::ballot(p); }
inline int __popc(unsigned x) { return __builtin_popcount(x); }
template <typename T>
inline T __shfl_down_sync(unsigned, T v, int offset) { return emu::shfl_down(v, offset); }
using std::isfinite;
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline int atomicSub(int* a, int v) { int old = *a; *a -= v; return old; }
// Blocks run one at a time and threads switch only at barriers: plain updates are atomic.
template <typename T>
inline T atomicAdd(T* a, T v) { T old = *a; *a += v; return old; }
inline int atomicMin(int* a, int v) { int old = *a; if (v < old) *a = v; return old; }
inline int __ffs(unsigned x) { return __builtin_ffs(int(x)); }
// (our kernels call it block-uniformly, so a block barrier serves)
inline void __syncwarp(unsigned = 0xffffffffu) { emu::barrier(); }

inline const char* cudaGetErrorString(cudaError_t e) { return e == cudaSuccess ? "no error" : "emulated error"; }
inline const char* cudaGetErrorName(cudaError_t e) { return e == cudaSuccess ? "cudaSuccess" : "cudaErrorEmu"; }
inline cudaError_t cudaGetLastError() { cudaError_t e = emu::last_error; emu::last_error = cudaSuccess; return e; }
inline cudaError_t cudaMalloc(void** p, size_t bytes) {
  if (bytes > emu::free_memory) return cudaErrorMemoryAllocation;
  *p = std::aligned_alloc(256, (bytes + 255) / 256 * 256);
  std::memset(*p, 0xA5, bytes);  // garbage, so lazy initialisation is really tested
  emu::bytes_allocated += bytes;
  return *p ? cudaSuccess : cudaErrorMemoryAllocation;
}
inline cudaError_t cudaFree(void* p) { std::free(p); return cudaSuccess; }
inline cudaError_t cudaMemcpy(void* d, const void* s, size_t n, cudaMemcpyKind) { std::memcpy(d, s, n); return cudaSuccess; }
inline cudaError_t cudaMemcpyAsync(void* d, const void* s, size_t n, cudaMemcpyKind, cudaStream_t st) {
  if (st && st->capturing) return cudaErrorInvalidValue;
  std::memcpy(d, s, n); return cudaSuccess;
}
inline cudaError_t cudaMemsetAsync(void* d, int v, size_t n, cudaStream_t st) {
  if (st && st->capturing) return cudaErrorInvalidValue;
  std::memset(d, v, n); return cudaSuccess;
}
inline cudaError_t cudaMemGetInfo(size_t* f, size_t* t) { *f = emu::free_memory; *t = size_t(2) << 30; return cudaSuccess; }
inline cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned) { *s = new CUstream_st; return cudaSuccess; }
inline cudaError_t cudaStreamDestroy(cudaStream_t s) { delete s; return cudaSuccess; }
inline cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
inline cudaError_t cudaEventCreate(cudaEvent_t* e) { *e = new CUevent_st; return cudaSuccess; }
inline cudaError_t cudaEventDestroy(cudaEvent_t e) { delete e; return cudaSuccess; }
inline cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t) { e->at = std::chrono::steady_clock::now(); return cudaSuccess; }
inline cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t a, cudaEvent_t b) {
  *ms = std::chrono::duration<float, std::milli>(b->at - a->at).count();
  return cudaSuccess;
}
inline cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode) {
  if (s->capturing) return cudaErrorInvalidValue;
  s->capturing = true; s->graph = new CUgraph_st; return cudaSuccess;
}
inline cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t* g) {
  if (!s->capturing) return cudaErrorInvalidValue;
  s->capturing = false; *g = s->graph; s->graph = nullptr; return cudaSuccess;
}
inline cudaError_t cudaGraphInstantiate(cudaGraphExec_t* e, cudaGraph_t g, unsigned long long) {
  *e = new CUgraphExec_st{g->ops}; return cudaSuccess;
}
inline cudaError_t cudaGraphDestroy(cudaGraph_t g) { delete g; return cudaSuccess; }
inline cudaError_t cudaGraphExecDestroy(cudaGraphExec_t e) { delete e; return cudaSuccess; }
inline cudaError_t cudaGraphLaunch(cudaGraphExec_t e, cudaStream_t s) {
  if (s->capturing) return cudaErrorInvalidValue;
  ++emu::graph_launches;
  for (auto& op : e->ops) op();
  return cudaSuccess;
}
inline cudaError_t cudaGetDevice(int* d) { *d = 0; return cudaSuccess; }
inline cudaError_t cudaSetDevice(int) { return cudaSuccess; }
inline cudaError_t cudaGetDeviceCount(int* c) { *c = 1; return cudaSuccess; }
inline cudaError_t cudaDriverGetVersion(int* v) { *v = 13000; return cudaSuccess; }
inline cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int) {
  std::strcpy(p->name, "Emulated GPU"); p->major = 9; p->minor = 0; p->totalGlobalMem = size_t(2) << 30; return cudaSuccess;
}
template <typename F>
inline cudaError_t cudaFuncGetAttributes(cudaFuncAttributes* a, F) { a->numRegs = 0; return cudaSuccess; }
