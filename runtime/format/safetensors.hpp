#pragma once
// Safetensors reader (memory-mapped): an 8-byte little-endian header length, a JSON header mapping
// tensor names to {dtype, shape, data_offsets} (plus an optional "__metadata__" of strings), then the
// raw tensor bytes. Also sharded checkpoints described by model.safetensors.index.json.

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "kernels/dtype.hpp"
#include "runtime/core/error.hpp"

namespace troupe::format {

/// One tensor of a safetensors file; shape is numpy order as stored.
struct safetensors_tensor {
  std::string name;
  dtype type = dtype::f32;
  std::vector<int64_t> shape;
  const void* data = nullptr;  ///< into the mapping, valid while the file object lives
  size_t nbytes = 0;
  uint64_t offset = 0;  ///< data_offsets[0]: from the start of the data section
};

class safetensors_file {
 public:
  /// Maps and parses one .safetensors file. Tensors other than F32, F16 and BF16 give
  /// unsupported_type naming the tensor; a file shorter than its header promises gives truncated; a
  /// tensor whose data_offsets do not span what its dtype and shape need, regions that overlap or
  /// leave bytes of the data section to no tensor (the format requires the buffer "entirely
  /// indexed", without holes) give bad_format naming the tensors.
  static expected<std::shared_ptr<const safetensors_file>> open(const std::filesystem::path& path);
  /// Parses safetensors bytes already in memory (what open() does after mapping; a fuzzer's entry
  /// point). owner keeps [data, data + size) alive as long as the result; name stands for the file in errors.
  static expected<std::shared_ptr<const safetensors_file>> parse(std::shared_ptr<const void> owner,
                                                                 const uint8_t* data, size_t size,
                                                                 const std::filesystem::path& name);

  const std::filesystem::path& path() const noexcept { return path_; }
  /// The "__metadata__" strings (empty if absent).
  const std::map<std::string, std::string, std::less<>>& metadata() const noexcept { return metadata_; }
  /// In the order of their data offsets.
  const std::vector<safetensors_tensor>& tensors() const noexcept { return tensors_; }
  /// nullptr if absent.
  const safetensors_tensor* tensor(std::string_view name) const;
  /// The mapping the tensors point into.
  const std::shared_ptr<const void>& mapping() const noexcept { return mapping_; }

 private:
  safetensors_file() = default;
  std::filesystem::path path_;
  std::map<std::string, std::string, std::less<>> metadata_;
  std::vector<safetensors_tensor> tensors_;
  std::map<std::string, size_t, std::less<>> index_;
  std::shared_ptr<const void> mapping_;
};

/// The tensors of a checkpoint that may be split over several safetensors files.
class safetensors_checkpoint {
 public:
  /// Opens a checkpoint: a .safetensors file, a model.safetensors.index.json (its weight_map names the
  /// shard of every tensor; shards must lie in the same directory), or a directory holding either
  /// (the index if present, else model.safetensors, else the only *.safetensors file).
  static expected<safetensors_checkpoint> open(const std::filesystem::path& path);

  /// nullptr if absent.
  const safetensors_tensor* tensor(std::string_view name) const;
  /// Every tensor name, sorted.
  std::vector<std::string> names() const;
  const std::vector<std::shared_ptr<const safetensors_file>>& files() const noexcept { return files_; }

 private:
  std::vector<std::shared_ptr<const safetensors_file>> files_;
  std::map<std::string, const safetensors_tensor*, std::less<>> tensors_;
};

}  // namespace troupe::format
