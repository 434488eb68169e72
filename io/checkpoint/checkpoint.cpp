#include "io/checkpoint/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <thread>
#include <tuple>

#include <algorithm>
#include <cmath>
#include <limits>
#include <mutex>
#include <set>
#include <stdexcept>

namespace loom::io::ckpt {
namespace {

nlohmann::json parse_json_file(const std::filesystem::path& file) {
  const std::string text = read_text_file(file);
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error(file.string() + ": not valid JSON (" + e.what() + ")");
  }
}

// view.h5: one virtual dataset per tensor mapping every piece from its shard file (paths
// relative to the checkpoint directory, which HDF5 resolves against the view file's folder).
void write_view(const std::filesystem::path& file, const nlohmann::json& tensors, const nlohmann::json& meta,
                std::int64_t step) {
  std::lock_guard<std::recursive_mutex> lock(h5::global_mutex());
  h5::silence_automatic_errors();
  const std::string ctx = file.string();
  h5::H5Handle out(H5_CHECK(H5Fcreate(file.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), ctx), H5Fclose);
  h5::write_string_attribute(out, "format", kFormatName, ctx);
  h5::write_int_attribute(out, "format_version", kFormatVersion, ctx);
  h5::write_int_attribute(out, "step", step, ctx);
  if (meta.contains("model_config")) h5::write_string_attribute(out, "model_config", meta["model_config"].dump(), ctx);
  h5::H5Handle lcpl(H5_CHECK(H5Pcreate(H5P_LINK_CREATE), ctx), H5Pclose);
  H5_CHECK(H5Pset_create_intermediate_group(lcpl, 1), ctx);
  const float missing = std::numeric_limits<float>::quiet_NaN();  // a lost source file reads as NaN, not 0
  for (const auto& [name, tensor] : tensors.items()) {
    const Shape shape = tensor.at("shape").get<Shape>();
    const int rank = static_cast<int>(shape.size());
    const hsize_t dims[2] = {hsize_t(shape[0]), rank == 2 ? hsize_t(shape[1]) : 1};
    h5::H5Handle space(H5_CHECK(H5Screate_simple(rank, dims, nullptr), ctx), H5Sclose);
    h5::H5Handle dcpl(H5_CHECK(H5Pcreate(H5P_DATASET_CREATE), ctx), H5Pclose);
    H5_CHECK(H5Pset_fill_value(dcpl, H5T_NATIVE_FLOAT, &missing), ctx);
    for (const auto& json : tensor.at("pieces")) {
      const StoredPiece piece = piece_from_json(json, ctx);
      const hsize_t start[2] = {hsize_t(piece.box.row0), hsize_t(piece.box.col0)};
      const hsize_t count[2] = {hsize_t(piece.box.rows), hsize_t(piece.box.cols)};
      h5::H5Handle vspace(H5_CHECK(H5Screate_simple(rank, dims, nullptr), ctx), H5Sclose);
      H5_CHECK(H5Sselect_hyperslab(vspace, H5S_SELECT_SET, start, nullptr, count, nullptr), ctx);
      h5::H5Handle src(H5_CHECK(H5Screate_simple(rank, count, nullptr), ctx), H5Sclose);
      H5_CHECK(H5Pset_virtual(dcpl, vspace, piece.file.c_str(), piece.dataset.c_str(), src), ctx);
    }
    h5::H5Handle dataset(
        H5_CHECK(H5Dcreate2(out, name.c_str(), H5T_IEEE_F32LE, space, lcpl, dcpl, H5P_DEFAULT), ctx + " (" + name + ")"),
        H5Dclose);
  }
  H5_CHECK(H5Fflush(out, H5F_SCOPE_GLOBAL), ctx);
}

}  // namespace

std::filesystem::path temporary_dir(const std::filesystem::path& root, std::int64_t step, const std::string& save_id) {
  return root / (step_dir_name(step) + ".tmp-" + save_id);
}

std::filesystem::path commit_checkpoint(const CommitRequest& request, const Retention& retention) {
  nlohmann::json tensors = nlohmann::json::object();
  nlohmann::json ranks = nlohmann::json::array();
  nlohmann::json shards = nlohmann::json::array();
  for (int rank = 0; rank < request.world_size; ++rank) {
    const auto file = request.tmp_dir / manifest_file_name(rank);
    if (!std::filesystem::exists(file)) throw std::runtime_error(file.string() + ": manifest of rank " + std::to_string(rank) + " is missing");
    const nlohmann::json manifest = parse_json_file(file);
    if (manifest.value("save_id", "") != request.save_id || manifest.value("step", -1) != request.step) {
      throw std::runtime_error(file.string() + ": manifest belongs to another save (step " +
                               std::to_string(manifest.value("step", -1)) + ")");
    }
    nlohmann::json rank_entry = {{"rank", rank}, {"state", manifest.value("rank_state", nlohmann::json::object())}};
    if (manifest.contains("file")) {
      rank_entry["file"] = manifest["file"];
      shards.push_back({{"rank", rank}, {"file", manifest["file"]}, {"bytes", manifest.value("bytes", 0)}});
    }
    ranks.push_back(rank_entry);
    for (const auto& json : manifest.at("pieces")) {
      const StoredPiece piece = piece_from_json(json, file.string());
      nlohmann::json& tensor = tensors[piece.tensor];
      if (tensor.is_null()) tensor = {{"shape", piece.shape}, {"dtype", "f32"}, {"pieces", nlohmann::json::array()}};
      if (tensor["shape"].get<Shape>() != piece.shape) {
        throw std::runtime_error(file.string() + ": tensor " + piece.tensor + " has shape " + shape_string(piece.shape) +
                                 " here but " + tensor["shape"].dump() + " in another shard");
      }
      tensor["pieces"].push_back(json);
    }
  }
  // The pieces of each tensor must tile it: inside its bounds, covering every element once.
  for (const auto& [name, tensor] : tensors.items()) {
    const Shape shape = tensor["shape"].get<Shape>();
    const Box whole = whole_box(shape);
    std::int64_t covered = 0;
    for (const auto& json : tensor["pieces"]) {
      const StoredPiece piece = piece_from_json(json, name);
      if (intersect(piece.box, whole) != piece.box) throw std::runtime_error("checkpoint tensor " + name + ": a piece lies outside " + shape_string(shape));
      covered += piece.box.numel();
    }
    if (covered != whole.numel()) {
      throw std::runtime_error("checkpoint tensor " + name + ": the shards hold " + std::to_string(covered) + " of its " +
                               std::to_string(whole.numel()) + " elements");
    }
  }
  nlohmann::json index = request.meta;
  index["format"] = kFormatName;
  index["format_version"] = kFormatVersion;
  index["step"] = request.step;
  index["save_id"] = request.save_id;
  index["world_size"] = request.world_size;
  index["shards"] = shards;
  index["ranks"] = ranks;
  index["tensors"] = tensors;
  write_view(request.tmp_dir / kViewFile, tensors, request.meta, request.step);
  fsync_path(request.tmp_dir / kViewFile);
  write_file_atomically(request.tmp_dir / kIndexFile, index.dump(1));
  fsync_path(request.tmp_dir);

  const std::filesystem::path final_dir = request.root / step_dir_name(request.step);
  if (std::filesystem::exists(final_dir)) {
    // The same step saved again (after a rollback): the old one goes only once the new one is in place.
    const auto old = request.root / (step_dir_name(request.step) + ".replaced-" + request.save_id);
    std::filesystem::rename(final_dir, old);
    std::filesystem::rename(request.tmp_dir, final_dir);
    std::filesystem::remove_all(old);
  } else {
    std::filesystem::rename(request.tmp_dir, final_dir);
  }
  fsync_path(request.root);
  write_file_atomically(request.root / kLatestFile, step_dir_name(request.step) + "\n");
  prune(request.root, retention, false);
  return final_dir;
}

std::vector<std::filesystem::path> prune(const std::filesystem::path& root, const Retention& retention,
                                         bool remove_temporaries) {
  std::vector<std::filesystem::path> removed;
  const auto committed = list_checkpoints(root);
  for (std::size_t i = static_cast<std::size_t>(std::max(1, retention.keep_last)); i < committed.size(); ++i) {
    const std::int64_t step = *parse_step_dir(committed[i].filename().string());
    if (retention.keep_every > 0 && step % retention.keep_every == 0) continue;
    std::filesystem::remove_all(committed[i]);
    removed.push_back(committed[i]);
  }
  if (remove_temporaries) {
    std::error_code error;
    for (const auto& entry : std::filesystem::directory_iterator(root, error)) {
      const std::string name = entry.path().filename().string();
      if (entry.is_directory() && (name.find(".tmp-") != std::string::npos || name.find(".replaced-") != std::string::npos)) {
        std::filesystem::remove_all(entry.path());
        removed.push_back(entry.path());
      }
    }
  }
  if (!removed.empty()) fsync_path(root);
  return removed;
}

nlohmann::json read_index(const std::filesystem::path& dir) {
  const auto file = dir / kIndexFile;
  if (!std::filesystem::exists(file)) throw std::runtime_error(file.string() + ": index is missing (an incomplete checkpoint)");
  nlohmann::json index = parse_json_file(file);
  if (index.value("format", "") != kFormatName) throw std::runtime_error(file.string() + ": not a loom checkpoint index");
  const int version = index.value("format_version", 0);
  if (version < 1 || version > kFormatVersion) {
    throw std::runtime_error(file.string() + ": format version " + std::to_string(version) +
                             " is not one this build reads (1.." + std::to_string(kFormatVersion) + ")");
  }
  for (const char* key : {"step", "save_id", "tensors", "shards", "ranks"}) {
    if (!index.contains(key)) throw std::runtime_error(file.string() + ": missing key \"" + key + "\"");
  }
  return index;
}

namespace {

// The problems of the shards at positions ≡ part (mod parts) of the index, skipping pieces in
// `skip` (already verified).
std::vector<std::string> verify_shards(const std::filesystem::path& dir, const nlohmann::json& index, ShardReader& reader,
                                       int part, int parts, const std::set<std::pair<std::string, std::string>>& skip) {
  std::vector<std::string> problems;
  const std::int64_t step = index["step"].get<std::int64_t>();
  const std::string save_id = index["save_id"].get<std::string>();
  std::map<std::string, std::vector<StoredPiece>> by_file;
  for (const auto& [name, tensor] : index["tensors"].items()) {
    for (const auto& json : tensor.at("pieces")) {
      StoredPiece piece = piece_from_json(json, (dir / kIndexFile).string());
      by_file[piece.file].push_back(std::move(piece));
    }
  }
  int position = 0;
  for (const auto& [file, pieces] : by_file) {
    if (position++ % parts != part) continue;
    try {
      const auto [file_step, file_id] = reader.shard_identity(file);
      if (file_step != step || file_id != save_id) {
        problems.push_back((dir / file).string() + ": shard of another save (step " + std::to_string(file_step) +
                           ", save " + file_id + "; the index expects step " + std::to_string(step) + ", save " + save_id + ")");
        continue;
      }
      for (const StoredPiece& piece : pieces) {
        if (!skip.count({piece.file, piece.dataset})) reader.verify_piece(piece);
      }
    } catch (const std::exception& e) {
      problems.push_back(e.what());
    }
  }
  if (part == 0 && !std::filesystem::exists(dir / kViewFile)) problems.push_back((dir / kViewFile).string() + ": view file is missing");
  return problems;
}

}  // namespace

std::vector<std::string> verify_checkpoint(const std::filesystem::path& dir, int part, int parts) {
  nlohmann::json index;
  try {
    index = read_index(dir);
  } catch (const std::exception& e) {
    return {e.what()};
  }
  ShardReader reader(dir);
  return verify_shards(dir, index, reader, part, parts, {});
}

std::vector<std::string> CheckpointReader::verify_rest(int part, int parts) {
  return verify_shards(dir_, index_, shards_, part, parts, checked_);
}

CheckpointReader::CheckpointReader(const std::filesystem::path& dir) : dir_(dir), index_(read_index(dir)), shards_(dir) {
  for (const auto& [name, tensor] : index_["tensors"].items()) {
    for (const auto& json : tensor.at("pieces")) pieces_[name].push_back(piece_from_json(json, (dir / kIndexFile).string()));
  }
}

Shape CheckpointReader::shape(const std::string& tensor) const {
  const auto it = pieces_.find(tensor);
  if (it == pieces_.end()) throw std::runtime_error(dir_.string() + ": checkpoint has no tensor " + tensor);
  return it->second.front().shape;
}

void CheckpointReader::read(const std::string& tensor, const Box& box, float* out) {
  const auto it = pieces_.find(tensor);
  if (it == pieces_.end()) throw std::runtime_error(dir_.string() + ": checkpoint has no tensor " + tensor);
  if (intersect(box, whole_box(it->second.front().shape)) != box) {
    throw std::runtime_error(dir_.string() + ": tensor " + tensor + " " + shape_string(it->second.front().shape) +
                             " does not contain the requested box (is the model config the same?)");
  }
  std::int64_t covered = 0;
  for (const StoredPiece& piece : it->second) {
    if (piece.box == box) {
      shards_.read_into(piece, box, out);
      shards_.check_data(piece, out);
      checked_.insert({piece.file, piece.dataset});
      return;
    }
  }
  for (const StoredPiece& piece : it->second) {
    if (const auto common = intersect(piece.box, box)) {
      shards_.read_into(piece, box, out);
      covered += common->numel();
    }
  }
  if (covered != box.numel()) throw std::runtime_error(dir_.string() + ": tensor " + tensor + " is not fully covered by its pieces");
}

void CheckpointReader::read_all(const std::vector<ReadRequest>& requests) {
  struct RawRead {
    const StoredPiece* piece;
    std::int64_t offset;
    float* out;
  };
  std::vector<RawRead> raw;
  std::vector<const ReadRequest*> rest;
  for (const ReadRequest& request : requests) {
    const auto it = pieces_.find(request.tensor);
    const StoredPiece* exact = nullptr;
    if (it != pieces_.end()) {
      for (const StoredPiece& piece : it->second) {
        if (piece.box == request.box) exact = &piece;
      }
    }
    const auto offset = exact ? shards_.raw_offset(*exact) : std::nullopt;
    if (offset) {
      raw.push_back({exact, *offset, request.out});
    } else {
      rest.push_back(&request);
    }
  }
  std::sort(raw.begin(), raw.end(), [](const RawRead& a, const RawRead& b) {
    return std::tie(a.piece->file, a.offset) < std::tie(b.piece->file, b.offset);
  });
  // Plain preads in parallel: a shard on a parallel filesystem (or an NVMe drive) serves
  // several streams faster than one, and each thread hashes what it read.
  std::map<std::string, int> fds;
  for (const RawRead& read : raw) {
    if (fds.count(read.piece->file)) continue;
    const auto path = dir_ / read.piece->file;
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      for (auto& [name, open_fd] : fds) ::close(open_fd);
      throw std::runtime_error(path.string() + ": cannot open: " + std::strerror(errno));
    }
    ::posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    fds[read.piece->file] = fd;
  }
  std::atomic<std::size_t> next{0};
  std::mutex error_mutex;
  std::string error;
  auto worker = [&] {
    for (std::size_t i = next++; i < raw.size(); i = next++) {
      const RawRead& read = raw[i];
      const auto path = (dir_ / read.piece->file).string();
      auto* at = reinterpret_cast<char*>(read.out);
      std::size_t left = static_cast<std::size_t>(read.piece->box.numel()) * sizeof(float);
      off_t offset = static_cast<off_t>(read.offset);
      try {
        while (left > 0) {
          const ssize_t n = ::pread(fds.at(read.piece->file), at, left, offset);
          if (n < 0 && errno == EINTR) continue;
          if (n <= 0) throw std::runtime_error(path + ": tensor " + read.piece->tensor + " is cut short (" +
                                               (n < 0 ? std::string(std::strerror(errno)) : "end of file") + ")");
          at += n;
          offset += n;
          left -= static_cast<std::size_t>(n);
        }
        shards_.check_data(*read.piece, read.out);
      } catch (const std::exception& e) {
        std::lock_guard<std::mutex> lock(error_mutex);
        if (error.empty()) error = e.what();
      }
    }
  };
  const unsigned threads = std::min<unsigned>(4, std::max(1u, std::thread::hardware_concurrency()));
  std::vector<std::thread> pool;
  for (unsigned t = 1; t < threads && t < raw.size(); ++t) pool.emplace_back(worker);
  worker();
  for (std::thread& thread : pool) thread.join();
  for (auto& [name, fd] : fds) ::close(fd);
  if (!error.empty()) throw std::runtime_error(error);
  for (const RawRead& read : raw) checked_.insert({read.piece->file, read.piece->dataset});
  for (const ReadRequest* request : rest) read(request->tensor, request->box, request->out);
}

std::vector<std::string> CheckpointReader::tensors() const {
  std::vector<std::string> names;
  for (const auto& [name, pieces] : pieces_) names.push_back(name);
  return names;
}

}  // namespace loom::io::ckpt
