// The part of the DLPack C ABI (https://dmlc.github.io/dlpack/latest/c_api.html)
// that ttfs-native consumes and produces: the unversioned DLManagedTensor
// exchanged in a PyCapsule named "dltensor" (renamed "used_dltensor" by the
// consumer, which then owns it and calls its deleter when done). Field
// order and widths follow the specification; enums are 32-bit there.
#pragma once

#include <cstdint>

namespace ttfs {
namespace dlpack {

enum DeviceType : int32_t { kCPU = 1, kCUDA = 2, kCUDAHost = 3, kCUDAManaged = 13 };
enum TypeCode : uint8_t { kInt = 0, kUInt = 1, kFloat = 2 };

struct Device {
  int32_t device_type;
  int32_t device_id;
};

struct DataType {
  uint8_t code;
  uint8_t bits;
  uint16_t lanes;
};

struct Tensor {
  void* data;
  Device device;
  int32_t ndim;
  DataType dtype;
  int64_t* shape;
  int64_t* strides;  // in elements; null: C-contiguous
  uint64_t byte_offset;
};

struct ManagedTensor {
  Tensor dl_tensor;
  void* manager_ctx;
  void (*deleter)(ManagedTensor* self);
};

constexpr const char* kCapsuleName = "dltensor";
constexpr const char* kUsedCapsuleName = "used_dltensor";

}  // namespace dlpack
}  // namespace ttfs
