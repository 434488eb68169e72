#include "io/checkpoint/shard_io.h"

#include <chrono>
#include <cstring>
#include <mutex>
#include <stdexcept>

#include "io/record/fingerprint.h"

namespace loom::io::ckpt {
namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

std::uint64_t checksum(const float* data, std::int64_t n) {
  record::Xxh64 hasher;
  hasher.update(data, static_cast<std::size_t>(n) * sizeof(float));
  return hasher.digest();
}

// The dataspace of a stored piece: [rows, cols] for 2-D tensors, [rows] for 1-D ones.
h5::H5Handle piece_space(const StoredPiece& piece, const std::string& ctx) {
  const hsize_t dims[2] = {static_cast<hsize_t>(piece.box.rows), static_cast<hsize_t>(piece.box.cols)};
  return h5::H5Handle(H5_CHECK(H5Screate_simple(piece.shape.size() == 2 ? 2 : 1, dims, nullptr), ctx), H5Sclose);
}

}  // namespace

ShardTimes write_shard(const ShardWrite& shard) {
  ShardTimes times;
  std::vector<StoredPiece> stored;
  const std::string file_name = shard_file_name(shard.rank);
  const std::filesystem::path path = shard.dir / file_name;
  const std::string ctx = path.string();
  if (!shard.pieces.empty()) {
    std::lock_guard<std::recursive_mutex> lock(h5::global_mutex());
    h5::silence_automatic_errors();
    auto start = Clock::now();
    {
      h5::H5Handle file(H5_CHECK(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), ctx), H5Fclose);
      h5::write_int_attribute(file, "format_version", kFormatVersion, ctx);
      h5::write_int_attribute(file, "step", shard.step, ctx);
      h5::write_int_attribute(file, "rank", shard.rank, ctx);
      h5::write_string_attribute(file, "save_id", shard.save_id, ctx);
      h5::H5Handle lcpl(H5_CHECK(H5Pcreate(H5P_LINK_CREATE), ctx), H5Pclose);
      H5_CHECK(H5Pset_create_intermediate_group(lcpl, 1), ctx);
      std::map<std::string, int> per_tensor;
      for (const SavePiece& piece : shard.pieces) {
        StoredPiece s{piece.tensor, piece.shape, piece.box, file_name, "", 0};
        s.dataset = "/" + piece.tensor + "/" + std::to_string(per_tensor[piece.tensor]++);
        s.xxh64 = checksum(piece.data, piece.box.numel());
        h5::H5Handle space = piece_space(s, ctx);
        h5::H5Handle dataset(
            H5_CHECK(H5Dcreate2(file, s.dataset.c_str(), H5T_IEEE_F32LE, space, lcpl, H5P_DEFAULT, H5P_DEFAULT),
                     ctx + " (" + piece.tensor + ")"),
            H5Dclose);
        H5_CHECK(H5Dwrite(dataset, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, piece.data),
                 ctx + " (" + piece.tensor + ")");
        times.bytes += piece.box.numel() * static_cast<std::int64_t>(sizeof(float));
        stored.push_back(std::move(s));
      }
      H5_CHECK(H5Fflush(file, H5F_SCOPE_GLOBAL), ctx);
    }
    times.write_s = since(start);
    start = Clock::now();
    fsync_path(path);
    times.sync_s = since(start);
    start = Clock::now();
    ShardReader reader(shard.dir);
    for (const StoredPiece& piece : stored) reader.verify_piece(piece);
    const auto identity = reader.shard_identity(file_name);
    if (identity.first != shard.step || identity.second != shard.save_id) {
      throw std::runtime_error(ctx + ": read back a different step or save id than was written");
    }
    times.verify_s = since(start);
  }
  nlohmann::json manifest = {{"format", kFormatName},       {"format_version", kFormatVersion},
                             {"rank", shard.rank},          {"step", shard.step},
                             {"save_id", shard.save_id},    {"bytes", times.bytes},
                             {"pieces", nlohmann::json::array()}, {"rank_state", shard.rank_state}};
  if (!shard.pieces.empty()) manifest["file"] = file_name;
  for (const StoredPiece& piece : stored) manifest["pieces"].push_back(to_json(piece));
  write_file_atomically(shard.dir / manifest_file_name(shard.rank), manifest.dump());
  return times;
}

hid_t ShardReader::file(const std::string& name) {
  auto it = files_.find(name);
  if (it != files_.end()) return it->second;
  const std::filesystem::path path = dir_ / name;
  if (!std::filesystem::exists(path)) throw std::runtime_error(path.string() + ": shard file is missing");
  h5::silence_automatic_errors();
  h5::H5Handle handle(H5_CHECK(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), path.string()), H5Fclose);
  return files_.emplace(name, std::move(handle)).first->second;
}

void ShardReader::read_into(const StoredPiece& piece, const Box& want, float* out) {
  const auto common = intersect(piece.box, want);
  if (!common) return;
  std::lock_guard<std::recursive_mutex> lock(h5::global_mutex());
  const std::string ctx = (dir_ / piece.file).string() + " (" + piece.tensor + ")";
  h5::H5Handle dataset(H5_CHECK(H5Dopen2(file(piece.file), piece.dataset.c_str(), H5P_DEFAULT), ctx), H5Dclose);
  h5::H5Handle file_space(H5_CHECK(H5Dget_space(dataset), ctx), H5Sclose);
  const bool two_d = piece.shape.size() == 2;
  const int rank = two_d ? 2 : 1;
  hsize_t dims[2] = {0, 0};
  if (H5_CHECK(H5Sget_simple_extent_dims(file_space, dims, nullptr), ctx) != rank || dims[0] != hsize_t(piece.box.rows) ||
      (two_d && dims[1] != hsize_t(piece.box.cols))) {
    throw std::runtime_error(ctx + ": dataset " + piece.dataset + " does not have the shape the index records");
  }
  if (piece.box == want) {  // the whole piece: one plain read, no selections
    H5_CHECK(H5Dread(dataset, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, out), ctx);
    return;
  }
  const hsize_t src_start[2] = {hsize_t(common->row0 - piece.box.row0), hsize_t(common->col0 - piece.box.col0)};
  const hsize_t count[2] = {hsize_t(common->rows), hsize_t(common->cols)};
  H5_CHECK(H5Sselect_hyperslab(file_space, H5S_SELECT_SET, src_start, nullptr, count, nullptr), ctx);
  const hsize_t mem_dims[2] = {hsize_t(want.rows), hsize_t(want.cols)};
  h5::H5Handle mem_space(H5_CHECK(H5Screate_simple(2, mem_dims, nullptr), ctx), H5Sclose);
  const hsize_t mem_start[2] = {hsize_t(common->row0 - want.row0), hsize_t(common->col0 - want.col0)};
  H5_CHECK(H5Sselect_hyperslab(mem_space, H5S_SELECT_SET, mem_start, nullptr, count, nullptr), ctx);
  if (!two_d) {
    // A 1-D tensor's file space is [rows]; the memory side stays [rows, 1] with the same count.
    const hsize_t start1[1] = {src_start[0]}, count1[1] = {count[0]};
    H5_CHECK(H5Sselect_hyperslab(file_space, H5S_SELECT_SET, start1, nullptr, count1, nullptr), ctx);
  }
  H5_CHECK(H5Dread(dataset, H5T_NATIVE_FLOAT, mem_space, file_space, H5P_DEFAULT, out), ctx);
}

void ShardReader::verify_piece(const StoredPiece& piece) {
  if (scratch_size_ < piece.box.numel()) {
    scratch_ = std::make_unique_for_overwrite<float[]>(static_cast<std::size_t>(piece.box.numel()));
    scratch_size_ = piece.box.numel();
  }
  read_into(piece, piece.box, scratch_.get());
  check_data(piece, scratch_.get());
}

void ShardReader::check_data(const StoredPiece& piece, const float* data) const {
  const std::uint64_t got = checksum(data, piece.box.numel());
  if (got != piece.xxh64) {
    throw std::runtime_error((dir_ / piece.file).string() + ": tensor " + piece.tensor + " piece " + piece.dataset +
                             " fails its checksum (index " + record::hex64(piece.xxh64) + ", file " +
                             record::hex64(got) + "): the shard is corrupt");
  }
}

std::optional<std::int64_t> ShardReader::raw_offset(const StoredPiece& piece) {
  std::lock_guard<std::recursive_mutex> lock(h5::global_mutex());
  const std::string ctx = (dir_ / piece.file).string() + " (" + piece.tensor + ")";
  h5::H5Handle dataset(H5_CHECK(H5Dopen2(file(piece.file), piece.dataset.c_str(), H5P_DEFAULT), ctx), H5Dclose);
  h5::H5Handle type(H5_CHECK(H5Dget_type(dataset), ctx), H5Tclose);
  if (H5Tequal(type, H5T_IEEE_F32LE) <= 0) return std::nullopt;
  const haddr_t offset = H5Dget_offset(dataset);
  if (offset == HADDR_UNDEF) return std::nullopt;
  if (H5Dget_storage_size(dataset) != static_cast<hsize_t>(piece.box.numel()) * sizeof(float)) {
    throw std::runtime_error(ctx + ": dataset " + piece.dataset + " holds fewer bytes than the index records");
  }
  return static_cast<std::int64_t>(offset);
}

std::pair<std::int64_t, std::string> ShardReader::shard_identity(const std::string& name) {
  std::lock_guard<std::recursive_mutex> lock(h5::global_mutex());
  const std::string ctx = (dir_ / name).string();
  const hid_t f = file(name);
  return {h5::read_int_attribute(f, "step", ctx), h5::read_string_attribute(f, "save_id", ctx)};
}

}  // namespace loom::io::ckpt
