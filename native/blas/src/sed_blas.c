/* Node-API binding: OpenBLAS sgemm, tfjs-style batched matmul, the _FusedMatMul epilogue and one-pass
 * AdamW / SGD updates over Float32Array views (zero-copy; callers pass views of the wasm heap). Owns
 * no memory and keeps no state between calls besides OpenBLAS's thread count, so it never serves
 * stale packed weights. */
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cblas.h>
#include <node_api.h>

#define THROW(env, msg)                         \
  do {                                          \
    napi_throw_type_error((env), NULL, (msg));  \
    return NULL;                                \
  } while (0)

#define CALL(env, expr)                                          \
  do {                                                           \
    if ((expr) != napi_ok) {                                     \
      const napi_extended_error_info* info_ = NULL;              \
      napi_get_last_error_info((env), &info_);                   \
      bool pending_ = false;                                     \
      napi_is_exception_pending((env), &pending_);               \
      if (!pending_)                                             \
        napi_throw_error((env), NULL,                            \
                         info_ && info_->error_message           \
                             ? info_->error_message              \
                             : "sed_blas: Node-API call failed"); \
      return NULL;                                               \
    }                                                            \
  } while (0)

/* Reads a Float32Array; a null/undefined argument gives data=NULL, len=0 when optional. */
static bool get_f32(napi_env env, napi_value v, bool optional, float** data, size_t* len,
                    const char* what) {
  napi_valuetype t;
  *data = NULL;
  *len = 0;
  if (napi_typeof(env, v, &t) != napi_ok) return false;
  if (optional && (t == napi_null || t == napi_undefined)) return true;
  bool is_ta = false;
  napi_is_typedarray(env, v, &is_ta);
  char msg[160];
  if (!is_ta) {
    snprintf(msg, sizeof msg, "sed_blas: %s must be a Float32Array", what);
    napi_throw_type_error(env, NULL, msg);
    return false;
  }
  napi_typedarray_type tt;
  void* p = NULL;
  size_t n = 0;
  if (napi_get_typedarray_info(env, v, &tt, &n, &p, NULL, NULL) != napi_ok) return false;
  if (tt != napi_float32_array) {
    snprintf(msg, sizeof msg, "sed_blas: %s must be a Float32Array", what);
    napi_throw_type_error(env, NULL, msg);
    return false;
  }
  if (p == NULL && n > 0) {
    snprintf(msg, sizeof msg, "sed_blas: %s is detached (wasm heap grew after the view was taken?)", what);
    napi_throw_type_error(env, NULL, msg);
    return false;
  }
  *data = (float*)p;
  *len = n;
  return true;
}

static bool get_i64(napi_env env, napi_value v, int64_t* out, const char* what) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_number) {
    char msg[120];
    snprintf(msg, sizeof msg, "sed_blas: %s must be a number", what);
    napi_throw_type_error(env, NULL, msg);
    return false;
  }
  double d;
  napi_get_value_double(env, v, &d);
  if (!(d >= 0 && d <= 2147483647.0) || d != floor(d)) {
    char msg[120];
    snprintf(msg, sizeof msg, "sed_blas: %s must be a non-negative int32, got %g", what, d);
    napi_throw_range_error(env, NULL, msg);
    return false;
  }
  *out = (int64_t)d;
  return true;
}

static bool get_f64(napi_env env, napi_value v, double* out, const char* what) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_number) {
    char msg[120];
    snprintf(msg, sizeof msg, "sed_blas: %s must be a number", what);
    napi_throw_type_error(env, NULL, msg);
    return false;
  }
  return napi_get_value_double(env, v, out) == napi_ok;
}

static bool get_bool(napi_env env, napi_value v, bool* out) {
  napi_value b;
  if (napi_coerce_to_bool(env, v, &b) != napi_ok) return false;
  return napi_get_value_bool(env, b, out) == napi_ok;
}

static napi_value undef(napi_env env) {
  napi_value u;
  napi_get_undefined(env, &u);
  return u;
}

/* Products below this many multiply-adds run on one thread: waking OpenBLAS's other threads costs
 * more than the work (measured 2-3x slower at the demo sizes, 32x384x192). The thread count can change
 * the last bits of a product (seen at 32x3072x768, not at any batch-32 demo shape); stage workers
 * run with 1 thread throughout, so their results do not depend on this switch. */
#define SMALL_GEMM_MNK 16777216.0
static void sgemm_sized(bool ta, bool tb, blasint M, blasint N, blasint K, float alpha, const float* A, blasint lda,
                        const float* B, blasint ldb, float beta, float* C, blasint ldc) {
  const int t = openblas_get_num_threads();
  const bool one = t > 1 && (double)M * (double)N * (double)K < SMALL_GEMM_MNK;
  if (one) openblas_set_num_threads(1);
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K, alpha, A, lda, B,
              ldb, beta, C, ldc);
  if (one) openblas_set_num_threads(t);
}

/* sgemm(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc): row-major cblas_sgemm. */
static napi_value js_sgemm(napi_env env, napi_callback_info info) {
  size_t argc = 13;
  napi_value a[13];
  CALL(env, napi_get_cb_info(env, info, &argc, a, NULL, NULL));
  if (argc != 13) THROW(env, "sed_blas.sgemm: expected 13 arguments");
  bool ta, tb;
  int64_t M, N, K, lda, ldb, ldc;
  double alpha, beta;
  float *A, *B, *C;
  size_t la, lb, lc;
  if (!get_bool(env, a[0], &ta) || !get_bool(env, a[1], &tb) || !get_i64(env, a[2], &M, "M") ||
      !get_i64(env, a[3], &N, "N") || !get_i64(env, a[4], &K, "K") ||
      !get_f64(env, a[5], &alpha, "alpha") || !get_f32(env, a[6], false, &A, &la, "A") ||
      !get_i64(env, a[7], &lda, "lda") || !get_f32(env, a[8], false, &B, &lb, "B") ||
      !get_i64(env, a[9], &ldb, "ldb") || !get_f64(env, a[10], &beta, "beta") ||
      !get_f32(env, a[11], false, &C, &lc, "C") || !get_i64(env, a[12], &ldc, "ldc"))
    return NULL;
  /* Bounds: the BLAS call must never read or write outside the views. */
  int64_t a_rows = ta ? K : M, a_cols = ta ? M : K;
  int64_t b_rows = tb ? N : K, b_cols = tb ? K : N;
  if (lda < (a_cols > 1 ? a_cols : 1) || ldb < (b_cols > 1 ? b_cols : 1) || ldc < (N > 1 ? N : 1))
    THROW(env, "sed_blas.sgemm: leading dimension smaller than the row length");
  if ((a_rows > 0 && a_cols > 0 && (size_t)((a_rows - 1) * lda + a_cols) > la) ||
      (b_rows > 0 && b_cols > 0 && (size_t)((b_rows - 1) * ldb + b_cols) > lb) ||
      (M > 0 && N > 0 && (size_t)((M - 1) * ldc + N) > lc))
    THROW(env, "sed_blas.sgemm: a matrix does not fit in its Float32Array");
  if (M == 0 || N == 0) return undef(env);
  if (K == 0) {
    for (int64_t i = 0; i < M; i++)
      for (int64_t j = 0; j < N; j++) C[i * ldc + j] = beta == 0 ? 0.0f : (float)beta * C[i * ldc + j];
    return undef(env);
  }
  sgemm_sized(ta, tb, (blasint)M, (blasint)N, (blasint)K, (float)alpha, A, (blasint)lda, B, (blasint)ldb, (float)beta, C,
              (blasint)ldc);
  return undef(env);
}

/* batchMatMul(a, b, out, batchA, batchB, M, N, K, transA, transB): out[bi] = op(a[bi % batchA]) x
 * op(b[bi % batchB]) for bi < max(batchA, batchB), the batch rule of tfjs's BatchMatMul kernels. */
static napi_value js_batch_mat_mul(napi_env env, napi_callback_info info) {
  size_t argc = 10;
  napi_value a[10];
  CALL(env, napi_get_cb_info(env, info, &argc, a, NULL, NULL));
  if (argc != 10) THROW(env, "sed_blas.batchMatMul: expected 10 arguments");
  float *A, *B, *C;
  size_t la, lb, lc;
  int64_t batchA, batchB, M, N, K;
  bool ta, tb;
  if (!get_f32(env, a[0], false, &A, &la, "a") || !get_f32(env, a[1], false, &B, &lb, "b") ||
      !get_f32(env, a[2], false, &C, &lc, "out") || !get_i64(env, a[3], &batchA, "batchA") ||
      !get_i64(env, a[4], &batchB, "batchB") || !get_i64(env, a[5], &M, "M") ||
      !get_i64(env, a[6], &N, "N") || !get_i64(env, a[7], &K, "K") || !get_bool(env, a[8], &ta) ||
      !get_bool(env, a[9], &tb))
    return NULL;
  if (batchA < 1 || batchB < 1) THROW(env, "sed_blas.batchMatMul: batch sizes must be >= 1");
  int64_t batch = batchA > batchB ? batchA : batchB;
  if ((size_t)(batchA * M * K) > la || (size_t)(batchB * K * N) > lb || (size_t)(batch * M * N) > lc)
    THROW(env, "sed_blas.batchMatMul: an operand does not fit in its Float32Array");
  if (M == 0 || N == 0) return undef(env);
  if (K == 0) {
    memset(C, 0, sizeof(float) * (size_t)(batch * M * N));
    return undef(env);
  }
  const blasint lda = (blasint)(ta ? M : K), ldb = (blasint)(tb ? K : N);
  for (int64_t bi = 0; bi < batch; bi++) {
    sgemm_sized(ta, tb, (blasint)M, (blasint)N, (blasint)K, 1.0f, A + (bi % batchA) * M * K, lda, B + (bi % batchB) * K * N,
                ldb, 0.0f, C + bi * M * N, (blasint)N);
  }
  return undef(env);
}

enum { ACT_LINEAR = 0, ACT_RELU, ACT_RELU6, ACT_PRELU, ACT_LEAKYRELU, ACT_SIGMOID, ACT_ELU };

/* biasActivation(out, N, bias|null, act, alpha, prelu|null): in place over rows of length N;
 * bias and prelu weights have length 1 (scalar) or N (per column). Formulas follow tfjs-cpu. */
static napi_value js_bias_activation(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value a[6];
  CALL(env, napi_get_cb_info(env, info, &argc, a, NULL, NULL));
  if (argc != 6) THROW(env, "sed_blas.biasActivation: expected 6 arguments");
  float *C, *bias, *pw;
  size_t lc, lbias, lpw;
  int64_t N, act;
  double alpha;
  if (!get_f32(env, a[0], false, &C, &lc, "out") || !get_i64(env, a[1], &N, "N") ||
      !get_f32(env, a[2], true, &bias, &lbias, "bias") || !get_i64(env, a[3], &act, "activation") ||
      !get_f64(env, a[4], &alpha, "alpha") || !get_f32(env, a[5], true, &pw, &lpw, "preluWeights"))
    return NULL;
  if (N < 1 || lc % (size_t)N != 0) THROW(env, "sed_blas.biasActivation: out length is not a multiple of N");
  if (bias && lbias != 1 && lbias != (size_t)N) THROW(env, "sed_blas.biasActivation: bias length must be 1 or N");
  if (act > ACT_ELU) THROW(env, "sed_blas.biasActivation: unknown activation code");
  if (act == ACT_PRELU && (!pw || (lpw != 1 && lpw != (size_t)N)))
    THROW(env, "sed_blas.biasActivation: prelu weights must have length 1 or N");
  const size_t rows = lc / (size_t)N;
  const float al = (float)alpha;
  for (size_t r = 0; r < rows; r++) {
    float* row = C + r * (size_t)N;
    if (bias) {
      if (lbias == 1) {
        const float b0 = bias[0];
        for (int64_t j = 0; j < N; j++) row[j] += b0;
      } else {
        for (int64_t j = 0; j < N; j++) row[j] += bias[j];
      }
    }
    switch (act) {
      case ACT_LINEAR:
        break;
      case ACT_RELU:
        for (int64_t j = 0; j < N; j++) row[j] = row[j] < 0 ? 0 : row[j];
        break;
      case ACT_RELU6:
        for (int64_t j = 0; j < N; j++) row[j] = row[j] < 0 ? 0 : (row[j] > 6 ? 6 : row[j]);
        break;
      case ACT_PRELU:
        for (int64_t j = 0; j < N; j++) {
          const float w = lpw == 1 ? pw[0] : pw[j];
          row[j] = row[j] < 0 ? w * row[j] : row[j];
        }
        break;
      case ACT_LEAKYRELU:
        for (int64_t j = 0; j < N; j++) row[j] = row[j] < 0 ? al * row[j] : row[j];
        break;
      case ACT_SIGMOID:
        for (int64_t j = 0; j < N; j++) row[j] = 1.0f / (1.0f + expf(-row[j]));
        break;
      case ACT_ELU:
        for (int64_t j = 0; j < N; j++) row[j] = row[j] >= 0 ? row[j] : expf(row[j]) - 1.0f;
        break;
    }
  }
  return undef(env);
}

/* Checks that every array has exactly n elements (optional ones may be NULL). */
static bool same_len(napi_env env, size_t n, float* const* arrs, const size_t* lens, int count, const char* fn) {
  for (int i = 0; i < count; i++) {
    if (arrs[i] && lens[i] != n) {
      char msg[120];
      snprintf(msg, sizeof msg, "sed_blas.%s: array %d has %zu elements, expected %zu", fn, i, lens[i], n);
      napi_throw_range_error(env, NULL, msg);
      return false;
    }
  }
  return true;
}

/* Elementwise loops split across OpenBLAS's thread count (the same cores the matMuls use): each
 * element's result does not depend on the split, so threaded and serial runs are bit-identical. */
typedef void (*range_fn)(const void* ctx, size_t lo, size_t hi);
struct range_job {
  range_fn fn;
  const void* ctx;
  size_t lo, hi;
};
static void* run_range_job(void* arg) {
  const struct range_job* j = (const struct range_job*)arg;
  j->fn(j->ctx, j->lo, j->hi);
  return NULL;
}
#define PAR_MAX_THREADS 8
/* Below this many elements a thread start costs more than it saves. */
#define PAR_MIN_ELEMS ((size_t)1 << 17)
static void parallel_range(range_fn fn, const void* ctx, size_t n) {
  int t = openblas_get_num_threads();
  if (t > PAR_MAX_THREADS) t = PAR_MAX_THREADS;
  if (t < 2 || n < PAR_MIN_ELEMS) {
    fn(ctx, 0, n);
    return;
  }
  /* Chunks on 64-byte boundaries so no two threads write the same cache line. */
  size_t chunk = ((n + (size_t)t - 1) / (size_t)t + 15) & ~(size_t)15;
  pthread_t th[PAR_MAX_THREADS];
  struct range_job jobs[PAR_MAX_THREADS];
  bool started[PAR_MAX_THREADS] = {false};
  for (int i = 1; i < t; i++) {
    size_t lo = (size_t)i * chunk, hi = lo + chunk < n ? lo + chunk : n;
    if (lo >= n) break;
    jobs[i] = (struct range_job){fn, ctx, lo, hi};
    started[i] = pthread_create(&th[i], NULL, run_range_job, &jobs[i]) == 0;
    if (!started[i]) fn(ctx, lo, hi); /* no thread available: do it here */
  }
  fn(ctx, 0, chunk < n ? chunk : n);
  for (int i = 1; i < t; i++)
    if (started[i]) pthread_join(th[i], NULL);
}

struct adamw_args {
  const float *p, *g, *m, *v;
  float *po, *mo, *vo;
  float decay, fb1, fb2, nb1, nb2, sbc2, feps, step;
};
static void adamw_range(const void* ctx, size_t lo, size_t hi) {
  const struct adamw_args* a = (const struct adamw_args*)ctx;
  const float *p = a->p, *g = a->g, *m = a->m, *v = a->v;
  float *po = a->po, *mo = a->mo, *vo = a->vo;
  const float decay = a->decay, fb1 = a->fb1, fb2 = a->fb2, nb1 = a->nb1, nb2 = a->nb2, sbc2 = a->sbc2, feps = a->feps,
              step = a->step;
  for (size_t i = lo; i < hi; i++) {
    const float gi = g[i];
    const float mi = m[i] * fb1 + gi * nb1;
    const float vi = v[i] * fb2 + (gi * gi) * nb2;
    const float denom = sqrtf(vi) / sbc2 + feps;
    po[i] = p[i] * decay - (mi / denom) * step;
    mo[i] = mi;
    vo[i] = vi;
  }
}

struct sgd_args {
  const float *p, *g, *buf;
  float *po, *bo;
  float flr, fm, fwd;
  bool wd, mom;
};
static void sgd_range(const void* ctx, size_t lo, size_t hi) {
  const struct sgd_args* a = (const struct sgd_args*)ctx;
  const float *p = a->p, *g = a->g, *buf = a->buf;
  float *po = a->po, *bo = a->bo;
  const float flr = a->flr, fm = a->fm, fwd = a->fwd;
  /* Four loops instead of branches inside one, so each vectorises. */
  if (a->wd && a->mom) {
    for (size_t i = lo; i < hi; i++) {
      const float d = buf[i] * fm + (g[i] + p[i] * fwd);
      bo[i] = d;
      po[i] = p[i] - d * flr;
    }
  } else if (a->mom) {
    for (size_t i = lo; i < hi; i++) {
      const float d = buf[i] * fm + g[i];
      bo[i] = d;
      po[i] = p[i] - d * flr;
    }
  } else if (a->wd) {
    for (size_t i = lo; i < hi; i++) po[i] = p[i] - (g[i] + p[i] * fwd) * flr;
  } else {
    for (size_t i = lo; i < hi; i++) po[i] = p[i] - g[i] * flr;
  }
}

/* adamw(p, g, m, v, pOut, mOut, vOut, lr, beta1, beta2, eps, weightDecay, bc1, bc2): one torch AdamW
 * step in one pass, with the formula of src/ml/optim.ts adamwUpdate (bc = 1 - beta^t). Outputs may
 * alias inputs elementwise (each element is read before it is written). */
static napi_value js_adamw(napi_env env, napi_callback_info info) {
  size_t argc = 14;
  napi_value a[14];
  CALL(env, napi_get_cb_info(env, info, &argc, a, NULL, NULL));
  if (argc != 14) THROW(env, "sed_blas.adamw: expected 14 arguments");
  float* arr[7];
  size_t len[7];
  const char* names[7] = {"p", "g", "m", "v", "pOut", "mOut", "vOut"};
  for (int i = 0; i < 7; i++)
    if (!get_f32(env, a[i], false, &arr[i], &len[i], names[i])) return NULL;
  double lr, b1, b2, eps, wd, bc1, bc2;
  if (!get_f64(env, a[7], &lr, "lr") || !get_f64(env, a[8], &b1, "beta1") || !get_f64(env, a[9], &b2, "beta2") ||
      !get_f64(env, a[10], &eps, "eps") || !get_f64(env, a[11], &wd, "weightDecay") ||
      !get_f64(env, a[12], &bc1, "bc1") || !get_f64(env, a[13], &bc2, "bc2"))
    return NULL;
  const size_t n = len[0];
  if (!same_len(env, n, arr, len, 7, "adamw")) return NULL;
  /* decay is exactly 1 without weight decay, so p * decay == p as in optim.ts. */
  const float decay = wd != 0 ? (float)(1.0 - lr * wd) : 1.0f, fb1 = (float)b1, fb2 = (float)b2, nb1 = (float)(1.0 - b1),
              nb2 = (float)(1.0 - b2), sbc2 = (float)sqrt(bc2), feps = (float)eps, step = (float)(lr / bc1);
  const struct adamw_args args = {arr[0], arr[1], arr[2], arr[3], arr[4], arr[5], arr[6], decay, fb1, fb2, nb1, nb2, sbc2, feps, step};
  parallel_range(adamw_range, &args, n);
  return undef(env);
}

/* sgd(p, g, buf|null, pOut, bufOut|null, lr, momentum, weightDecay): one torch SGD step (dampening 0,
 * no nesterov) with the formula of src/ml/optim.ts sgdUpdate; buf is required when momentum > 0. */
static napi_value js_sgd(napi_env env, napi_callback_info info) {
  size_t argc = 8;
  napi_value a[8];
  CALL(env, napi_get_cb_info(env, info, &argc, a, NULL, NULL));
  if (argc != 8) THROW(env, "sed_blas.sgd: expected 8 arguments");
  float* arr[5];
  size_t len[5];
  const char* names[5] = {"p", "g", "buf", "pOut", "bufOut"};
  const bool optional[5] = {false, false, true, false, true};
  for (int i = 0; i < 5; i++)
    if (!get_f32(env, a[i], optional[i], &arr[i], &len[i], names[i])) return NULL;
  double lr, mom, wd;
  if (!get_f64(env, a[5], &lr, "lr") || !get_f64(env, a[6], &mom, "momentum") || !get_f64(env, a[7], &wd, "weightDecay"))
    return NULL;
  const size_t n = len[0];
  if (!same_len(env, n, arr, len, 5, "sgd")) return NULL;
  if (mom != 0 && (!arr[2] || !arr[4])) THROW(env, "sed_blas.sgd: momentum > 0 needs buf and bufOut");
  /* g + p * 0 would turn -0 into +0 and keep NaN/Inf of p; optim.ts skips the term entirely. */
  const struct sgd_args args = {arr[0], arr[1], arr[2], arr[3], arr[4], (float)lr, (float)mom, (float)wd, wd != 0, mom != 0};
  parallel_range(sgd_range, &args, n);
  return undef(env);
}

struct exp_args {
  const float* x;
  float* out;
};
static void exp_range(const void* ctx, size_t lo, size_t hi) {
  const struct exp_args* a = (const struct exp_args*)ctx;
  for (size_t i = lo; i < hi; i++) a->out[i] = expf(a->x[i]);
}

/* exp(x, out): out[i] = expf(x[i]). tfjs-wasm's Exp kernel is a scalar loop over the same expf
 * algorithm (musl and glibc share ARM's optimized-routines expf), so the bits match; this one runs on
 * OpenBLAS's threads. */
static napi_value js_exp(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value a[2];
  CALL(env, napi_get_cb_info(env, info, &argc, a, NULL, NULL));
  if (argc != 2) THROW(env, "sed_blas.exp: expected 2 arguments");
  float* arr[2];
  size_t len[2];
  if (!get_f32(env, a[0], false, &arr[0], &len[0], "x") || !get_f32(env, a[1], false, &arr[1], &len[1], "out")) return NULL;
  if (!same_len(env, len[0], arr, len, 2, "exp")) return NULL;
  const struct exp_args args = {arr[0], arr[1]};
  parallel_range(exp_range, &args, len[0]);
  return undef(env);
}

/* x86-64: a second copy of the hot loops for AVX2 machines (x86-64-v3), picked at load time by
 * glibc's ifunc; each copy rounds every operation the same way (no FMA contraction in ISO C mode). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__linux__)
#define HOT_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define HOT_CLONES
#endif

/* ---- Eval-path elementwise kernels: GELU, LayerNorm, row softmax. Written so GCC vectorises the
 * inner loops (no calls, branchless selects); results are within ~1e-7 relative of exact math, not
 * bit-equal to tfjs-wasm's scalar kernels, so only the eval forward uses them. ---- */

/* e^x: x = n ln2 + r with |r| <= ln2/2, e^r by its Taylor polynomial to r^7 (truncation error below
 * 2e-8 relative), 2^n from exponent bits. Below -87.3 (where float32 e^x leaves the normal range) 0. */
static inline float exp_poly(float x) {
  const float xc = x < -87.3f ? -87.3f : (x > 88.7f ? 88.7f : x);
  /* round to nearest without a libm call: adding 1.5 * 2^23 pushes the fraction out of the mantissa */
  const float fn = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  const float r = (xc - fn * 0.693145751953125f) - fn * 1.428606765330187e-06f;
  const float p =
      1.0f + r * (1.0f + r * (0.5f + r * (1.6666667e-1f + r * (4.1666668e-2f + r * (8.3333338e-3f + r * (1.3888889e-3f + r * 1.9841270e-4f))))));
  union {
    int32_t i;
    float f;
  } u;
  u.i = ((int32_t)fn + 127) << 23;
  return x < -87.3f ? 0.0f : p * u.f;
}

/* x * Phi(x) with Phi(x) = erfc(-x / sqrt 2) / 2 and erfc from the Chebyshev-fitted form in
 * Numerical Recipes (erfcc: fractional error below 1.2e-7 everywhere). The erfc form keeps the
 * negative tail accurate where 1 + erf(x / sqrt 2) cancels. */
static inline float gelu_erfc(float x) {
  const float z = fabsf(x) * 0.70710678118654752f;
  const float t = 1.0f / (1.0f + 0.5f * z);
  const float poly =
      -1.26551223f +
      t * (1.00002368f +
           t * (0.37409196f +
                t * (0.09678418f +
                     t * (-0.18628806f + t * (0.27886807f + t * (-1.13520398f + t * (1.48851587f + t * (-0.82215223f + t * 0.17087277f))))))));
  const float erfc = t * exp_poly(-z * z + poly);
  const float phi = x >= 0.0f ? 1.0f - 0.5f * erfc : 0.5f * erfc;
  return x * phi;
}

struct gelu_args {
  const float* x;
  float* out;
};
HOT_CLONES static void gelu_range(const void* ctx, size_t lo, size_t hi) {
  const struct gelu_args* a = (const struct gelu_args*)ctx;
  const float* x = a->x;
  float* out = a->out;
  for (size_t i = lo; i < hi; i++) out[i] = gelu_erfc(x[i]);
}

/* gelu(x, out): exact-erf GELU to ~1e-7 relative (see gelu_erfc). */
static napi_value js_gelu(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value a[2];
  CALL(env, napi_get_cb_info(env, info, &argc, a, NULL, NULL));
  if (argc != 2) THROW(env, "sed_blas.gelu: expected 2 arguments");
  float* arr[2];
  size_t len[2];
  if (!get_f32(env, a[0], false, &arr[0], &len[0], "x") || !get_f32(env, a[1], false, &arr[1], &len[1], "out")) return NULL;
  if (!same_len(env, len[0], arr, len, 2, "gelu")) return NULL;
  const struct gelu_args args = {arr[0], arr[1]};
  parallel_range(gelu_range, &args, len[0]);
  return undef(env);
}

/* layerNorm(x, cols, w, b, eps, out): per row of `cols`, (x - mean) / sqrt(var + eps) * w + b with the
 * biased variance (torch.nn.LayerNorm); mean and variance accumulated in double. */
static napi_value js_layer_norm(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value a[6];
  CALL(env, napi_get_cb_info(env, info, &argc, a, NULL, NULL));
  if (argc != 6) THROW(env, "sed_blas.layerNorm: expected 6 arguments");
  float *x, *w, *b, *out;
  size_t lx, lw, lb, lo;
  int64_t cols;
  double eps;
  if (!get_f32(env, a[0], false, &x, &lx, "x") || !get_i64(env, a[1], &cols, "cols") || !get_f32(env, a[2], false, &w, &lw, "w") ||
      !get_f32(env, a[3], false, &b, &lb, "b") || !get_f64(env, a[4], &eps, "eps") || !get_f32(env, a[5], false, &out, &lo, "out"))
    return NULL;
  if (cols <= 0 || lx % (size_t)cols != 0 || lw != (size_t)cols || lb != (size_t)cols || lo != lx)
    THROW(env, "sed_blas.layerNorm: shapes do not fit (x rows x cols, w and b cols, out like x)");
  const size_t rows = lx / (size_t)cols, n = (size_t)cols;
  for (size_t r = 0; r < rows; r++) {
    const float* xr = x + r * n;
    float* orow = out + r * n;
    double s = 0;
    for (size_t k = 0; k < n; k++) s += xr[k];
    const float mean = (float)(s / (double)n);
    double ss = 0;
    for (size_t k = 0; k < n; k++) {
      const double d = (double)xr[k] - (double)mean;
      ss += d * d;
    }
    const float rstd = (float)(1.0 / sqrt(ss / (double)n + eps));
    for (size_t k = 0; k < n; k++) orow[k] = (xr[k] - mean) * rstd * w[k] + b[k];
  }
  return undef(env);
}

/* softmaxRows(x, cols, p, lse): per row of `cols`, p = softmax (float), lse = max + log(sum e^(x - max))
 * (double); exps in float (exp_poly), sums in double. */
static napi_value js_softmax_rows(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value a[4];
  CALL(env, napi_get_cb_info(env, info, &argc, a, NULL, NULL));
  if (argc != 4) THROW(env, "sed_blas.softmaxRows: expected 4 arguments");
  float *x, *p;
  size_t lx, lp;
  int64_t cols;
  if (!get_f32(env, a[0], false, &x, &lx, "x") || !get_i64(env, a[1], &cols, "cols") || !get_f32(env, a[2], false, &p, &lp, "p")) return NULL;
  bool is_ta = false;
  napi_is_typedarray(env, a[3], &is_ta);
  napi_typedarray_type tt;
  void* lse_data = NULL;
  size_t llse = 0;
  if (!is_ta || napi_get_typedarray_info(env, a[3], &tt, &llse, &lse_data, NULL, NULL) != napi_ok || tt != napi_float64_array)
    THROW(env, "sed_blas.softmaxRows: lse must be a Float64Array");
  if (cols <= 0 || lx % (size_t)cols != 0 || lp != lx || llse != lx / (size_t)cols)
    THROW(env, "sed_blas.softmaxRows: shapes do not fit (x rows x cols, p like x, lse one per row)");
  double* lse = (double*)lse_data;
  const size_t rows = lx / (size_t)cols, n = (size_t)cols;
  for (size_t r = 0; r < rows; r++) {
    const float* xr = x + r * n;
    float* pr = p + r * n;
    float mx = xr[0];
    for (size_t k = 1; k < n; k++) mx = xr[k] > mx ? xr[k] : mx;
    for (size_t k = 0; k < n; k++) pr[k] = exp_poly(xr[k] - mx);
    double s = 0;
    for (size_t k = 0; k < n; k++) s += pr[k];
    const float inv = (float)(1.0 / s);
    for (size_t k = 0; k < n; k++) pr[k] *= inv;
    lse[r] = (double)mx + log(s);
  }
  return undef(env);
}

/* colSum(x, rows, cols, out): out[j] = sum over i of x[i * cols + j] (a reduction over leading
 * axes, e.g. the bias gradient of a dense layer), accumulated row by row in float like tfjs. */
static napi_value js_col_sum(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value a[4];
  CALL(env, napi_get_cb_info(env, info, &argc, a, NULL, NULL));
  if (argc != 4) THROW(env, "sed_blas.colSum: expected 4 arguments");
  float *x, *out;
  size_t lx, lo;
  int64_t rows, cols;
  if (!get_f32(env, a[0], false, &x, &lx, "x") || !get_i64(env, a[1], &rows, "rows") ||
      !get_i64(env, a[2], &cols, "cols") || !get_f32(env, a[3], false, &out, &lo, "out"))
    return NULL;
  if ((size_t)(rows * cols) > lx || (size_t)cols > lo) THROW(env, "sed_blas.colSum: an array is too small");
  memset(out, 0, sizeof(float) * (size_t)cols);
  for (int64_t i = 0; i < rows; i++) {
    const float* row = x + i * cols;
    for (int64_t j = 0; j < cols; j++) out[j] += row[j];
  }
  return undef(env);
}

static napi_value js_set_num_threads(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value a[1];
  CALL(env, napi_get_cb_info(env, info, &argc, a, NULL, NULL));
  int64_t n;
  if (argc != 1 || !get_i64(env, a[0], &n, "threads")) return NULL;
  if (n < 1) THROW(env, "sed_blas.setNumThreads: threads must be >= 1");
  openblas_set_num_threads((int)n);
  return undef(env);
}

static napi_value js_num_threads(napi_env env, napi_callback_info info) {
  napi_value r;
  CALL(env, napi_create_int32(env, openblas_get_num_threads(), &r));
  return r;
}

static napi_value js_config(napi_env env, napi_callback_info info) {
  char buf[512];
  snprintf(buf, sizeof buf, "%s; core %s", openblas_get_config(), openblas_get_corename());
  napi_value r;
  CALL(env, napi_create_string_utf8(env, buf, NAPI_AUTO_LENGTH, &r));
  return r;
}

NAPI_MODULE_INIT() {
  napi_property_descriptor props[] = {
      {"sgemm", NULL, js_sgemm, NULL, NULL, NULL, napi_enumerable, NULL},
      {"batchMatMul", NULL, js_batch_mat_mul, NULL, NULL, NULL, napi_enumerable, NULL},
      {"biasActivation", NULL, js_bias_activation, NULL, NULL, NULL, napi_enumerable, NULL},
      {"adamw", NULL, js_adamw, NULL, NULL, NULL, napi_enumerable, NULL},
      {"sgd", NULL, js_sgd, NULL, NULL, NULL, napi_enumerable, NULL},
      {"exp", NULL, js_exp, NULL, NULL, NULL, napi_enumerable, NULL},
      {"gelu", NULL, js_gelu, NULL, NULL, NULL, napi_enumerable, NULL},
      {"layerNorm", NULL, js_layer_norm, NULL, NULL, NULL, napi_enumerable, NULL},
      {"softmaxRows", NULL, js_softmax_rows, NULL, NULL, NULL, napi_enumerable, NULL},
      {"colSum", NULL, js_col_sum, NULL, NULL, NULL, napi_enumerable, NULL},
      {"setNumThreads", NULL, js_set_num_threads, NULL, NULL, NULL, napi_enumerable, NULL},
      {"numThreads", NULL, js_num_threads, NULL, NULL, NULL, napi_enumerable, NULL},
      {"config", NULL, js_config, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  if (napi_define_properties(env, exports, sizeof props / sizeof props[0], props) != napi_ok) return NULL;
  return exports;
}
