/* Fused exact nearest-row search for the memory bank (called from search.py via ctypes).
 *
 * The library path (search.py) takes a matrix product per bank chunk and then re-reads it
 * four times from memory (coarse products resized, fine products added, norms added,
 * minimum). This kernel keeps each tile of products in registers and reduces it to row
 * minima at once, so the bank is streamed once per image and nothing but the running
 * minima is written. Arithmetic is float32 throughout (exact in the same sense as the
 * library path: the same sums in another order). One source is compiled for AVX-512 and
 * for AVX2 + FMA; hy_nearest picks by what the CPU reports, and returns -1 where it has
 * neither, so the caller keeps the library path. hy_nearest_bf16 is the bfloat16 copy
 * (_nearest_bf16.h), for CPUs with AVX-512 BF16. The threads are OpenMP's, which in a
 * process that has loaded torch are torch's own (one libgomp per process).
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <immintrin.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define HY_TAPS 4      /* bilinear taps per output row of a coarse map */
#define HY_MAX_MAPS 8  /* feature maps per image */
#define HY_MAX_THREADS 64
/* Threads take the bank STEP blocks at a time from a shared counter, not in fixed halves:
 * a core that is shared for a while (another library's worker spinning after its own
 * parallel work) then costs only its own share of the time, not the whole call's. */
#define HY_STEP_BLOCKS 8
#define HY_BF16_TARGET __attribute__((target("avx512f,avx512bf16,f16c,fma")))

typedef struct {
    const float *rows;      /* n x c queries on this map's grid, centred and scaled by -2 */
    int32_t n;              /* rows on this map's grid (map 0: the output rows) */
    int32_t c;              /* channels */
    int32_t offset;         /* first channel of this map in a bank row */
    int32_t unused;
    const int32_t *taps;    /* output rows x HY_TAPS rows of this map (maps after the first) */
    const float *weights;   /* output rows x HY_TAPS weights */
} hy_map;

typedef struct {
    const void *bank; /* rows x dim, float32 or float16, row-major */
    int32_t half;     /* 1: the bank is float16 */
    int32_t dim;
    int64_t rows;
    const float *mean; /* dim: the centre subtracted from bank rows (queries come centred) */
    const hy_map *maps; /* nimages x nmaps */
    int32_t nmaps;
    int32_t nimages;
} hy_job;

/* Whether the job's maps are well formed: channels inside a bank row, taps where needed. */
static int job_valid(const hy_job *job) {
    if (job->nmaps < 1 || job->nmaps > HY_MAX_MAPS || job->nimages < 0 || job->rows < 0) return 0;
    for (int64_t i = 0; i < (int64_t)job->nimages * job->nmaps; i++) {
        const hy_map *m = &job->maps[i];
        if (m->n < 0 || m->c < 0 || m->offset < 0 || m->offset + m->c > job->dim) return 0;
        if (i % job->nmaps && (!m->taps || !m->weights)) return 0;
    }
    return 1;
}

/* The most coarse-map rows one image has: what a thread's coarse products buffer holds. */
static int64_t largest_coarse_rows(const hy_job *job) {
    int64_t largest = 0;
    for (int image = 0; image < job->nimages; image++) {
        int64_t sum = 0;
        for (int m = 1; m < job->nmaps; m++) sum += job->maps[(int64_t)image * job->nmaps + m].n;
        if (sum > largest) largest = sum;
    }
    return largest;
}

/* Threads worth running: at least one, no more than there are steps of `width`-row blocks. */
static int team_size(int32_t threads, int64_t rows, int width) {
    int64_t steps = (rows + (int64_t)width * HY_STEP_BLOCKS - 1) / ((int64_t)width * HY_STEP_BLOCKS);
    if (threads > HY_MAX_THREADS) threads = HY_MAX_THREADS;
    if (threads > steps) threads = (int32_t)steps;
    return threads < 1 ? 1 : threads;
}

#pragma GCC push_options
#pragma GCC target("avx512f,f16c,fma")
#define LANES 16
#define TILE 8
#define SFX avx512
#include "_nearest_body.h"
#undef LANES
#undef TILE
#undef SFX
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx2,f16c,fma")
#define LANES 8
#define TILE 6
#define SFX avx2
#include "_nearest_body.h"
#undef LANES
#undef TILE
#undef SFX
#pragma GCC pop_options

#include "_nearest_bf16.h"

typedef void (*search_fn)(const hy_job *, int64_t, int64_t, float *, float *, float *, float *);

typedef struct {
    const hy_job *job;
    search_fn fn;
    int lanes;
    int64_t *next; /* the next step of blocks, shared */
    int64_t out_rows;
    float *best; /* out_rows x lanes */
    int failed;
} hy_share;

static void run_share(hy_share *s) {
    const hy_job *job = s->job;
    int width = 2 * s->lanes;
    int64_t coarse = largest_coarse_rows(job);
    float *block = aligned_alloc(64, ((size_t)job->dim * width * 4 + 63) / 64 * 64);
    float *norms = aligned_alloc(64, 64 * 4);
    float *scratch = aligned_alloc(64, ((size_t)(coarse + 1) * width * 4 + 63) / 64 * 64);
    if (!block || !norms || !scratch) {
        s->failed = 1;
    } else {
        float inf = __builtin_inff();
        for (int64_t i = 0; i < s->out_rows * s->lanes; i++) s->best[i] = inf;
        for (;;) {
            int64_t row0 = __atomic_fetch_add(s->next, 1, __ATOMIC_RELAXED) * HY_STEP_BLOCKS * width;
            if (row0 >= job->rows) break;
            int64_t row1 = row0 + HY_STEP_BLOCKS * width;
            if (row1 > job->rows) row1 = job->rows;
            s->fn(job, row0, row1, block, norms, scratch, s->best);
        }
    }
    free(block);
    free(norms);
    free(scratch);
}

/* Which copy this CPU runs: 16 (AVX-512), 8 (AVX2 + FMA) or 0 (neither). */
int hy_lanes(void) {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("f16c")) return 16;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c"))
        return 8;
    return 0;
}

/* best[out row] = min over bank rows of ||b - mean||^2 + sum over maps of (-2 q . b),
 * for every image's output rows, one image after another. `lanes` forces a copy (0: the
 * CPU's best). Returns 0, -1 where the CPU has no copy, -2 on bad arguments or memory. */
int hy_nearest(const hy_job *job, int32_t threads, int32_t lanes, float *best) {
    if (lanes == 0) lanes = hy_lanes();
    if (lanes != 16 && lanes != 8) return -1;
    if (lanes > hy_lanes()) return -1;
    if (!job_valid(job)) return -2;
    int64_t out_rows = 0;
    for (int image = 0; image < job->nimages; image++) out_rows += job->maps[(int64_t)image * job->nmaps].n;
    search_fn fn = lanes == 16 ? search_avx512 : search_avx2;
    threads = team_size(threads, job->rows, 2 * lanes);
    hy_share shares[HY_MAX_THREADS];
    int failed = 0;
    int64_t next = 0;
    for (int t = 0; t < threads; t++) {
        hy_share *s = &shares[t];
        s->job = job;
        s->fn = fn;
        s->lanes = lanes;
        s->next = &next;
        s->out_rows = out_rows;
        s->failed = 0;
        s->best = malloc((size_t)(out_rows > 0 ? out_rows : 1) * lanes * sizeof(float));
        failed |= !s->best;
    }
    if (!failed) {
        /* OpenMP, not threads of our own: the library is torch's (one libgomp per process),
         * so its workers, still spinning after torch's last parallel work, take ours at
         * once instead of competing with new threads for the cores. */
#pragma omp parallel for num_threads(threads) schedule(static, 1)
        for (int t = 0; t < threads; t++) run_share(&shares[t]);
    }
    for (int t = 0; t < threads; t++) failed |= !shares[t].best || shares[t].failed;
    if (!failed) {
        for (int64_t i = 0; i < out_rows; i++) {
            float m = __builtin_inff();
            for (int t = 0; t < threads; t++)
                for (int l = 0; l < lanes; l++) {
                    float v = shares[t].best[i * lanes + l];
                    if (v < m) m = v;
                }
            best[i] = m;
        }
    }
    for (int t = 0; t < threads; t++) free(shares[t].best);
    return failed ? -2 : 0;
}

/* Whether this CPU runs the bfloat16 copy. */
int hy_bf16(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bf16") &&
           __builtin_cpu_supports("f16c") && __builtin_cpu_supports("fma");
}

/* As hy_nearest, on a bank packed by hy_pack_bf16, products in bfloat16 and the candidates
 * measured again in float32 (_nearest_bf16.h). Returns -1 where the CPU has no BF16, -2 on
 * bad arguments or memory, -3 where a map's channels do not start on a pair (the caller
 * searches in float32). */
HY_BF16_TARGET int hy_nearest_bf16(const hy_job *job, const uint32_t *packed, const float *norms, int32_t threads,
                                   float *best) {
    if (!hy_bf16()) return -1;
    if (!job_valid(job)) return -2;
    int64_t nmaps_all = (int64_t)job->nimages * job->nmaps, query_words = 0, out_rows = 0, coarse_rows = 0;
    for (int64_t i = 0; i < nmaps_all; i++) {
        const hy_map *m = &job->maps[i];
        if (m->offset % 2 || (m->c % 2 && m->offset + m->c != job->dim)) return -3;
        query_words += (int64_t)m->n * ((m->c + 1) / 2);
        if (i % job->nmaps == 0) out_rows += m->n;
        else coarse_rows += m->n;
    }
    bf_map *bm = malloc((size_t)(nmaps_all + 1) * sizeof(bf_map));
    uint32_t *words = malloc((size_t)(query_words + 1) * sizeof(uint32_t));
    float *query_norms = malloc((size_t)(out_rows + coarse_rows + 1) * sizeof(float));
    threads = team_size(threads, job->rows, BF_WIDTH);
    int64_t next = 0;
    bf_share shares[HY_MAX_THREADS];
    int failed = !bm || !words || !query_norms;
    for (int t = 0; t < threads; t++) {
        shares[t].best = malloc((size_t)(out_rows + 1) * 16 * sizeof(float));
        shares[t].which = malloc((size_t)(out_rows + 1) * 16 * sizeof(int32_t));
        failed |= !shares[t].best || !shares[t].which;
    }
    if (!failed) {
        uint32_t *at = words;
        float *norm_at = query_norms;
        for (int64_t i = 0; i < nmaps_all; i++) {
            const hy_map *m = &job->maps[i];
            int pairs = (m->c + 1) / 2;
            bm[i].rows = at;
            bm[i].pairs = pairs;
            bm[i].first_pair = m->offset / 2;
            for (int64_t j = 0; j < m->n; j++)
                for (int p = 0; p < pairs; p++)
                    at[j * pairs + p] = bf16_pair(m->rows + j * m->c, 2 * p, m->c);
            at += (int64_t)m->n * pairs;
            row_norms(m->rows, m->n, m->c, norm_at);
            norm_at += m->n;
        }
        for (int t = 0; t < threads; t++) {
            bf_share *s = &shares[t];
            s->job = job;
            s->packed = packed;
            s->norms = norms;
            s->bm = bm;
            s->next = &next;
            s->out_rows = out_rows;
            s->failed = 0;
        }
#pragma omp parallel num_threads(threads)
        {
            int me = omp_get_thread_num(), team = omp_get_num_threads();
            for (int t = me; t < threads; t += team) bf_run(&shares[t]);
#pragma omp barrier
            int ran = 1;
            for (int t = 0; t < threads; t++) ran &= !shares[t].failed;
            float *whole = malloc((size_t)job->dim * sizeof(float) + 4);
            if (ran && whole) {
                int64_t out = 0;
                const float *norm_at = query_norms;
                for (int image = 0; image < job->nimages; image++) {
                    const hy_map *maps = job->maps + (int64_t)image * job->nmaps;
                    int64_t n = maps[0].n;
                    bf_measure(job, maps, shares, threads, norm_at, norms, out, n * me / team,
                               n * (me + 1) / team, whole, best);
                    out += n;
                    for (int m = 0; m < job->nmaps; m++) norm_at += maps[m].n;
                }
            }
            if (!whole) {
#pragma omp atomic write
                shares[me % threads].failed = 1;
            }
            free(whole);
        }
        for (int t = 0; t < threads; t++) failed |= shares[t].failed;
    }
    for (int t = 0; t < threads; t++) {
        free(shares[t].best);
        free(shares[t].which);
    }
    free(bm);
    free(words);
    free(query_norms);
    return failed ? -2 : 0;
}

/* An importable module, so that Python finds this file where the package is installed. */
static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_nearest", "Fused nearest-row search (ctypes).", -1, NULL, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__nearest(void) { return PyModule_Create(&module); }
