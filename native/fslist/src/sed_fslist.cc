// @sed-pipe/fslist: the listing signature text of folders (src/hash/listing.ts, listDirSync with
// keep = false), made on native threads. For each folder: its entries in the order Node's readdir
// gives (libuv's scandir: sorted by strcmp), directories, regular files and symlinks only, each
// stat'ed with links followed; a folder is "d\0<name>\n", a file
// "f\0<name>\0<dev>\0<ino>\0<size>\0<mtimeMs>\0<ctimeMs>\n" with every number printed as JavaScript's
// String(number) prints it, mtimeMs/ctimeMs computed as Node computes them (sec * 1e3 + nsec / 1e6 in
// doubles). sed-pipe signs the SHA-256 of that text; its tests check the text equals the JS listing's.
//
// begin(paths, threads, digest) starts the threads and returns at once (the caller goes on loading
// modules); finish(handle) lists what is left on the calling thread, waits for the rest and returns,
// per folder, [text, racyUntilMs] or null when the folder could not be listed (missing, unreadable, a
// dangling link in it). With digest (where `digests` is true: built against the OpenSSL headers that
// ship with Node, whose libcrypto symbols Node exports to addons), the text is replaced by its SHA-256
// in lower-case hex, computed on the listing threads: the JavaScript thread then neither receives nor
// hashes the text (90 MB for a folder tree of 1.28 M files). Threads are detached and share the job by
// reference count: a handle never finished (the process exits, or the result is not wanted) costs
// nothing but the work already done.
//
// statMany(paths) stats files (links followed) on the calling thread: a Float64Array of size and
// mtimeMs per path, NaN for both where stat fails (the launcher's bundle check: ~220 stats in 0.9 ms
// here against 2.7 ms through fs.statSync, more at start-up while that code is cold).
#define NAPI_VERSION 8
#include <node_api.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#if defined(__has_include)
#if __has_include(<openssl/evp.h>)
#include <openssl/evp.h>
#define SED_DIGESTS 1
#endif
#endif
#ifndef SED_DIGESTS
#define SED_DIGESTS 0
#endif

#ifdef __APPLE__
#define SED_MTIM st_mtimespec
#define SED_CTIM st_ctimespec
#else
#define SED_MTIM st_mtim
#define SED_CTIM st_ctim
#endif

namespace {

struct Folder {
  std::string path;
  bool ok = false;
  std::string text;
  double racyUntilMs = -INFINITY;
};

struct Job {
  std::vector<Folder> folders;
  bool digest = false;  // replace each text by its SHA-256 hex
  std::atomic<size_t> next{0};
  std::mutex mu;
  std::condition_variable cv;
  size_t done = 0;  // folders finished, under mu
};

// JavaScript's Number::toString(10) (ECMA-262 6.1.6.1.20) from the shortest round-trip digits, which
// std::to_chars gives in scientific form.
void appendNumber(std::string& out, double v) {
  if (std::isnan(v)) {
    out += "NaN";
    return;
  }
  if (v == 0) {
    out += '0';
    return;
  }
  if (v < 0) {
    out += '-';
    v = -v;
  }
  if (std::isinf(v)) {
    out += "Infinity";
    return;
  }
  if (v < 9007199254740992.0 && v == std::floor(v)) {  // an exact integer below 2^53
    char buf[24];
    auto r = std::to_chars(buf, buf + sizeof buf, static_cast<unsigned long long>(v));
    out.append(buf, r.ptr);
    return;
  }
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::scientific);
  const char* e = std::find(buf, r.ptr, 'e');
  char digits[32];
  int k = 0;
  for (const char* q = buf; q < e; q++)
    if (*q != '.') digits[k++] = *q;
  // The exponent: "e+XX" or "e-XX" up to r.ptr (to_chars does not end its output with a NUL).
  int exp10 = 0;
  const char* x = e + 1;
  const bool negative = *x == '-';
  if (*x == '+' || *x == '-') x++;
  std::from_chars(x, r.ptr, exp10);
  const int n = (negative ? -exp10 : exp10) + 1;
  if (k <= n && n <= 21) {
    out.append(digits, k);
    out.append(n - k, '0');
  } else if (0 < n && n <= 21) {
    out.append(digits, n);
    out += '.';
    out.append(digits + n, k - n);
  } else if (-6 < n && n <= 0) {
    out += "0.";
    out.append(-n, '0');
    out.append(digits, k);
  } else {
    out += digits[0];
    if (k > 1) {
      out += '.';
      out.append(digits + 1, k - 1);
    }
    out += 'e';
    out += n - 1 >= 0 ? '+' : '-';
    out += std::to_string(std::abs(n - 1));
  }
}

double msFromTimespec(const struct timespec& t) {
  // As Node: sec * kMsPerSec + nsec / kNsPerMs, in doubles (built with -ffp-contract=off: no fused multiply-add).
  return static_cast<double>(t.tv_sec) * 1000.0 + static_cast<double>(t.tv_nsec) / 1e6;
}

// racyWindowMs of listing.ts: whole-second mtimes get 2 s, finer ones 50 ms.
double racyWindowMs(double mtimeMs) { return std::fmod(mtimeMs, 1000.0) == 0 ? 2000.0 : 50.0; }

void listFolder(Folder& f) {
  int dfd = open(f.path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return;
  DIR* d = fdopendir(dfd);
  if (!d) {
    close(dfd);
    return;
  }
  struct Entry {
    std::string name;
    unsigned char type;
  };
  std::vector<Entry> entries;
  errno = 0;
  while (struct dirent* e = readdir(d)) {
    const char* n = e->d_name;
    if (n[0] == '.' && (n[1] == 0 || (n[1] == '.' && n[2] == 0))) continue;
    entries.push_back({n, e->d_type});
  }
  if (errno != 0) {
    closedir(d);
    return;
  }
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) { return std::strcmp(a.name.c_str(), b.name.c_str()) < 0; });
  std::string& text = f.text;
  text.reserve(entries.size() * 72);
  bool ok = true;
  for (const Entry& e : entries) {
    unsigned char type = e.type;
    if (type == DT_UNKNOWN) {  // as Node's readdir: the type from lstat
      struct stat l;
      if (fstatat(dfd, e.name.c_str(), &l, AT_SYMLINK_NOFOLLOW) != 0) {
        ok = false;
        break;
      }
      type = S_ISDIR(l.st_mode) ? DT_DIR : S_ISREG(l.st_mode) ? DT_REG : S_ISLNK(l.st_mode) ? DT_LNK : DT_UNKNOWN;
    }
    if (type != DT_DIR && type != DT_REG && type != DT_LNK) continue;
    struct stat st;
    if (fstatat(dfd, e.name.c_str(), &st, 0) != 0) {  // links followed; a dangling one fails the folder
      ok = false;
      break;
    }
    if (S_ISDIR(st.st_mode)) {
      text += "d";
      text += '\0';
      text += e.name;
      text += '\n';
    } else if (S_ISREG(st.st_mode)) {
      const double mtimeMs = msFromTimespec(st.SED_MTIM);
      text += "f";
      text += '\0';
      text += e.name;
      text += '\0';
      appendNumber(text, static_cast<double>(st.st_dev));
      text += '\0';
      appendNumber(text, static_cast<double>(st.st_ino));
      text += '\0';
      appendNumber(text, static_cast<double>(st.st_size));
      text += '\0';
      appendNumber(text, mtimeMs);
      text += '\0';
      appendNumber(text, msFromTimespec(st.SED_CTIM));
      text += '\n';
      f.racyUntilMs = std::max(f.racyUntilMs, mtimeMs + racyWindowMs(mtimeMs));
    }
  }
  closedir(d);
  f.ok = ok;
  if (!ok) std::string().swap(f.text);
}

#if SED_DIGESTS
// The SHA-256 of `text` in lower-case hex (as node:crypto's digest("hex")), or false on failure.
bool sha256Hex(const std::string& text, std::string& hex) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(text.data(), text.size(), md, &len, EVP_sha256(), nullptr) != 1 || len != 32) return false;
  static const char kHex[] = "0123456789abcdef";
  hex.resize(2 * len);
  for (unsigned int i = 0; i < len; i++) {
    hex[2 * i] = kHex[md[i] >> 4];
    hex[2 * i + 1] = kHex[md[i] & 15];
  }
  return true;
}
#endif

void listAndSign(Folder& f, bool digest) {
  listFolder(f);
#if SED_DIGESTS
  if (digest && f.ok) {
    std::string hex;
    if (sha256Hex(f.text, hex)) {
      f.text.swap(hex);
    } else {
      f.ok = false;  // unsigned: the caller lists it again its own way
      std::string().swap(f.text);
    }
  }
#endif
}

// Lists folders until none is left unclaimed.
void work(Job& job) {
  size_t finished = 0;
  for (;;) {
    size_t i = job.next.fetch_add(1);
    if (i >= job.folders.size()) break;
    listAndSign(job.folders[i], job.digest);
    finished++;
  }
  if (finished) {
    std::lock_guard<std::mutex> lock(job.mu);
    job.done += finished;
  }
  job.cv.notify_all();
}

#define CHECK(call)                                                      \
  do {                                                                   \
    if ((call) != napi_ok) {                                             \
      napi_throw_error(env, nullptr, "@sed-pipe/fslist: " #call " failed"); \
      return nullptr;                                                    \
    }                                                                    \
  } while (0)

void finalizeHandle(napi_env, void* data, void*) { delete static_cast<std::shared_ptr<Job>*>(data); }

std::string stringArg(napi_env env, napi_value v, bool* ok) {
  size_t len = 0;
  *ok = napi_get_value_string_utf8(env, v, nullptr, 0, &len) == napi_ok;
  if (!*ok) return {};
  std::string s(len, '\0');
  *ok = napi_get_value_string_utf8(env, v, s.data(), len + 1, &len) == napi_ok;
  return s;
}

// The strings of JavaScript array `arr` (begin's and statMany's paths), or false after throwing a
// TypeError "<who>: every path must be a string".
bool stringArray(napi_env env, napi_value arr, const char* who, std::vector<std::string>* out) {
  uint32_t n = 0;
  if (napi_get_array_length(env, arr, &n) != napi_ok) {
    napi_throw_error(env, nullptr, "@sed-pipe/fslist: napi_get_array_length failed");
    return false;
  }
  out->resize(n);
  for (uint32_t i = 0; i < n; i++) {
    napi_value el;
    bool ok = napi_get_element(env, arr, i, &el) == napi_ok;
    if (ok) (*out)[i] = stringArg(env, el, &ok);
    if (!ok) {
      napi_throw_type_error(env, nullptr, (std::string(who) + ": every path must be a string").c_str());
      return false;
    }
  }
  return true;
}

// begin(paths: string[], threads: number, digest?: boolean): handle
napi_value Begin(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK(napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr));
  bool isArray = false;
  if (argc < 2 || napi_is_array(env, argv[0], &isArray) != napi_ok || !isArray) {
    napi_throw_type_error(env, nullptr, "begin(paths: string[], threads: number, digest?: boolean)");
    return nullptr;
  }
  std::vector<std::string> paths;
  if (!stringArray(env, argv[0], "begin", &paths)) return nullptr;
  int32_t threads = 0;
  CHECK(napi_get_value_int32(env, argv[1], &threads));
  bool digest = false;
  if (argc >= 3) {
    napi_valuetype t;
    CHECK(napi_typeof(env, argv[2], &t));
    if (t == napi_boolean) CHECK(napi_get_value_bool(env, argv[2], &digest));
  }
  if (digest && !SED_DIGESTS) {
    napi_throw_error(env, nullptr, "begin: built without OpenSSL's headers, this addon makes no digests (see its `digests`)");
    return nullptr;
  }
  auto job = std::make_shared<Job>();
  job->digest = digest;
  job->folders.resize(paths.size());
  for (size_t i = 0; i < paths.size(); i++) job->folders[i].path = std::move(paths[i]);
  const int spawn = std::max(0, std::min<int>(threads, static_cast<int>(job->folders.size())));
  for (int t = 0; t < spawn; t++) {
    try {
      std::thread([job] { work(*job); }).detach();
    } catch (...) {
      break;  // no thread: finish() lists it all on the calling thread
    }
  }
  napi_value handle;
  auto* held = new std::shared_ptr<Job>(job);
  if (napi_create_external(env, held, finalizeHandle, nullptr, &handle) != napi_ok) {
    delete held;
    napi_throw_error(env, nullptr, "@sed-pipe/fslist: napi_create_external failed");
    return nullptr;
  }
  return handle;
}

// finish(handle): Array<[text: string, racyUntilMs: number] | null>
napi_value Finish(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr));
  void* data = nullptr;
  if (argc < 1 || napi_get_value_external(env, argv[0], &data) != napi_ok || !data) {
    napi_throw_type_error(env, nullptr, "finish(handle): not a handle from begin()");
    return nullptr;
  }
  Job& job = **static_cast<std::shared_ptr<Job>*>(data);
  work(job);
  {
    std::unique_lock<std::mutex> lock(job.mu);
    job.cv.wait(lock, [&] { return job.done == job.folders.size(); });
  }
  napi_value out;
  CHECK(napi_create_array_with_length(env, job.folders.size(), &out));
  for (size_t i = 0; i < job.folders.size(); i++) {
    Folder& f = job.folders[i];
    napi_value item;
    if (!f.ok) {
      CHECK(napi_get_null(env, &item));
    } else {
      napi_value text, until;
      CHECK(napi_create_string_utf8(env, f.text.data(), f.text.size(), &text));
      CHECK(napi_create_double(env, f.racyUntilMs, &until));
      CHECK(napi_create_array_with_length(env, 2, &item));
      CHECK(napi_set_element(env, item, 0, text));
      CHECK(napi_set_element(env, item, 1, until));
    }
    CHECK(napi_set_element(env, out, static_cast<uint32_t>(i), item));
    std::string().swap(f.text);
  }
  return out;
}

// statMany(paths: string[]): Float64Array [size, mtimeMs] per path, NaN for both where stat fails.
napi_value StatMany(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr));
  bool isArray = false;
  if (argc < 1 || napi_is_array(env, argv[0], &isArray) != napi_ok || !isArray) {
    napi_throw_type_error(env, nullptr, "statMany(paths: string[])");
    return nullptr;
  }
  std::vector<std::string> paths;
  if (!stringArray(env, argv[0], "statMany", &paths)) return nullptr;
  const size_t n = paths.size();
  void* data = nullptr;
  napi_value buffer, out;
  CHECK(napi_create_arraybuffer(env, sizeof(double) * 2 * n, &data, &buffer));
  double* v = static_cast<double*>(data);
  for (size_t i = 0; i < n; i++) {
    struct stat st;
    if (stat(paths[i].c_str(), &st) == 0) {
      v[2 * i] = static_cast<double>(st.st_size);
      v[2 * i + 1] = msFromTimespec(st.SED_MTIM);
    } else {
      v[2 * i] = v[2 * i + 1] = NAN;
    }
  }
  CHECK(napi_create_typedarray(env, napi_float64_array, 2 * n, buffer, 0, &out));
  return out;
}

// formatNumber(x): String(x) as the listing text prints it (tests compare it with JavaScript's).
napi_value FormatNumber(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr));
  double v = 0;
  if (argc < 1 || napi_get_value_double(env, argv[0], &v) != napi_ok) {
    napi_throw_type_error(env, nullptr, "formatNumber(x: number)");
    return nullptr;
  }
  std::string s;
  appendNumber(s, v);
  napi_value out;
  CHECK(napi_create_string_utf8(env, s.data(), s.size(), &out));
  return out;
}

}  // namespace

NAPI_MODULE_INIT() {
  napi_property_descriptor props[] = {
      {"begin", nullptr, Begin, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"finish", nullptr, Finish, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"formatNumber", nullptr, FormatNumber, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"statMany", nullptr, StatMany, nullptr, nullptr, nullptr, napi_default, nullptr},
  };
  if (napi_define_properties(env, exports, sizeof props / sizeof props[0], props) != napi_ok) return nullptr;
  napi_value version, digests;
  if (napi_create_uint32(env, 2, &version) != napi_ok || napi_set_named_property(env, exports, "version", version) != napi_ok) return nullptr;
  if (napi_get_boolean(env, SED_DIGESTS != 0, &digests) != napi_ok || napi_set_named_property(env, exports, "digests", digests) != napi_ok) return nullptr;
  return exports;
}
