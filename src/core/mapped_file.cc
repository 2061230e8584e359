#include "core/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/error.h"

namespace pagoda {
namespace {

// Closes a file descriptor on every path out of open().
class FdGuard {
 public:
  explicit FdGuard(int fd) : fd_(fd) {}
  ~FdGuard() {
    if (fd_ >= 0) ::close(fd_);
  }
  FdGuard(const FdGuard&) = delete;
  FdGuard& operator=(const FdGuard&) = delete;
  [[nodiscard]] int get() const { return fd_; }

 private:
  int fd_;
};

[[noreturn]] void fail_errno(const std::string& path, const char* what) {
  int err = errno;
  fail(err == ENOENT ? ErrorCode::kNotFound : ErrorCode::kIo, "{}: {}: {}", path, what, std::strerror(err));
}

}  // namespace

std::shared_ptr<const MappedFile> MappedFile::open(const std::string& path) {
  FdGuard fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) fail_errno(path, "cannot open");
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) fail_errno(path, "cannot stat");
  if (!S_ISREG(st.st_mode)) fail(ErrorCode::kInvalidFile, "{}: not a regular file", path);
  auto size = static_cast<uint64_t>(st.st_size);
  const uint8_t* data = nullptr;
  if (size > 0) {
    void* p = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd.get(), 0);
    if (p == MAP_FAILED) fail_errno(path, "cannot map");
    data = static_cast<const uint8_t*>(p);
  }
  auto file = std::shared_ptr<MappedFile>(new MappedFile(path, data, size));
  file->mapped_ = data != nullptr;
  return file;
}

MappedFile::MappedFile(std::string path, const uint8_t* data, uint64_t size)
    : path_(std::move(path)), data_(data), size_(size) {}

std::shared_ptr<const MappedFile> MappedFile::from_memory(std::string name, std::vector<uint8_t> bytes) {
  auto file = std::shared_ptr<MappedFile>(new MappedFile(std::move(name), nullptr, bytes.size()));
  file->owned_ = std::move(bytes);
  file->data_ = file->owned_.data();
  return file;
}

MappedFile::~MappedFile() {
  if (mapped_) ::munmap(const_cast<uint8_t*>(data_), size_);
}

std::string read_text_file(const std::string& path, uint64_t max_bytes) {
  auto file = MappedFile::open(path);
  if (file->size() > max_bytes) {
    fail(ErrorCode::kInvalidFile, "{}: file is {} bytes, over the limit of {} bytes", path, file->size(), max_bytes);
  }
  return std::string(reinterpret_cast<const char*>(file->data()), file->size());
}

}  // namespace pagoda
