/* The bfloat16 copy of the fused search (AVX-512 with BF16), included once by _nearest.c.
 *
 * Products are taken on bfloat16 features with float32 sums (vdpbf16ps: twice the float32
 * rate), which is not exact. So each lane of each thread keeps its nearest row by those
 * products, and afterwards every such candidate that could be the nearest row (its
 * bfloat16 distance within twice the rounding bound of the least) is measured again in
 * float32. The result is always the float32 distance to a real bank row, at most twice
 * the rounding bound above the exact minimum, and equal to it unless the exact nearest row
 * lost its lane to a near tie; docs/benchmarks.md measures how often that happens.
 *
 * The bank is packed once (hy_pack_bf16): blocks of 32 rows, channel pairs interleaved per
 * row, with each row's float32 squared norm.
 */

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bf16,f16c,fma")

#define BF_WIDTH 32
#define BF_TILE 12

static inline uint32_t bf16_bits(float x) {
    uint32_t bits;
    __builtin_memcpy(&bits, &x, 4);
    return (bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16; /* round to nearest even */
}

static inline uint32_t bf16_pair(const float *x, int k, int c) {
    return bf16_bits(x[k]) | (k + 1 < c ? bf16_bits(x[k + 1]) << 16 : 0u);
}

/* Packs `rows` bank rows (centred on `mean`) into `packed` (blocks x pairs x 32 words) and
 * `norms` (blocks x 32, infinite past the last row). */
void hy_pack_bf16(const void *bank, int32_t half, int64_t rows, int32_t dim, const float *mean,
                  uint32_t *packed, float *norms) {
    int pairs = (dim + 1) / 2;
    float *row = malloc((size_t)dim * sizeof(float) + 4);
    int64_t blocks = (rows + BF_WIDTH - 1) / BF_WIDTH;
    for (int64_t i = 0; i < blocks * BF_WIDTH; i++) {
        uint32_t *out = packed + (i / BF_WIDTH) * pairs * BF_WIDTH + i % BF_WIDTH;
        if (i >= rows) {
            for (int p = 0; p < pairs; p++) out[p * BF_WIDTH] = 0u;
            norms[i] = __builtin_inff();
            continue;
        }
        float sum = 0.0f;
        for (int k = 0; k < dim; k++) {
            float x = half ? (float)((const _Float16 *)bank)[i * dim + k]
                           : ((const float *)bank)[i * dim + k];
            row[k] = x - mean[k];
            sum += row[k] * row[k];
        }
        for (int p = 0; p < pairs; p++) out[p * BF_WIDTH] = bf16_pair(row, 2 * p, dim);
        norms[i] = sum;
    }
    free(row);
}

typedef struct {
    const uint32_t *rows; /* n x pairs of this map's queries in bfloat16 pairs */
    int pairs;
    int first_pair;       /* of the bank row */
} bf_map;

static inline __attribute__((always_inline)) void bf_products(const int R, const uint32_t *rows, int pairs,
                                                              const uint32_t *block, float *out) {
    __m512 acc[BF_TILE][2];
    for (int r = 0; r < R; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    for (int p = 0; p < pairs; p++) {
        __m512bh b0 = (__m512bh)_mm512_loadu_si512(block + p * BF_WIDTH);
        __m512bh b1 = (__m512bh)_mm512_loadu_si512(block + p * BF_WIDTH + 16);
        for (int r = 0; r < R; r++) {
            __m512bh q = (__m512bh)_mm512_set1_epi32((int)rows[r * pairs + p]);
            acc[r][0] = _mm512_dpbf16_ps(acc[r][0], q, b0);
            acc[r][1] = _mm512_dpbf16_ps(acc[r][1], q, b1);
        }
    }
    for (int r = 0; r < R; r++) {
        _mm512_storeu_ps(out + r * BF_WIDTH, acc[r][0]);
        _mm512_storeu_ps(out + r * BF_WIDTH + 16, acc[r][1]);
    }
}

static inline __attribute__((always_inline)) void bf_tile(const int R, const hy_map *maps, const bf_map *bm,
                                                          int nmaps, int first, const uint32_t *block,
                                                          const float *norms, float *const *coarse,
                                                          int32_t row0, float *best, int32_t *which) {
    const uint32_t *rows = bm[0].rows + (int64_t)first * bm[0].pairs;
    const uint32_t *b = block + bm[0].first_pair * BF_WIDTH;
    __m512 acc[BF_TILE][2];
    for (int r = 0; r < R; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    for (int p = 0; p < bm[0].pairs; p++) {
        __m512bh b0 = (__m512bh)_mm512_loadu_si512(b + p * BF_WIDTH);
        __m512bh b1 = (__m512bh)_mm512_loadu_si512(b + p * BF_WIDTH + 16);
        for (int r = 0; r < R; r++) {
            __m512bh q = (__m512bh)_mm512_set1_epi32((int)rows[r * bm[0].pairs + p]);
            acc[r][0] = _mm512_dpbf16_ps(acc[r][0], q, b0);
            acc[r][1] = _mm512_dpbf16_ps(acc[r][1], q, b1);
        }
    }
    for (int m = 1; m < nmaps; m++) {
        const int32_t *taps = maps[m].taps + (int64_t)first * HY_TAPS;
        const float *weights = maps[m].weights + (int64_t)first * HY_TAPS;
        for (int r = 0; r < R; r++)
            for (int t = 0; t < HY_TAPS; t++) {
                __m512 w = _mm512_set1_ps(weights[r * HY_TAPS + t]);
                const float *p = coarse[m] + (int64_t)taps[r * HY_TAPS + t] * BF_WIDTH;
                acc[r][0] = _mm512_fmadd_ps(w, _mm512_loadu_ps(p), acc[r][0]);
                acc[r][1] = _mm512_fmadd_ps(w, _mm512_loadu_ps(p + 16), acc[r][1]);
            }
    }
    __m512 n0 = _mm512_loadu_ps(norms), n1 = _mm512_loadu_ps(norms + 16);
    __m512i lane = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
    __m512i i0 = _mm512_add_epi32(_mm512_set1_epi32(row0), lane);
    __m512i i1 = _mm512_add_epi32(i0, _mm512_set1_epi32(16));
    for (int r = 0; r < R; r++) {
        __m512 d0 = _mm512_add_ps(acc[r][0], n0), d1 = _mm512_add_ps(acc[r][1], n1);
        __mmask16 second = _mm512_cmp_ps_mask(d1, d0, _CMP_LT_OQ);
        __m512 d = _mm512_mask_blend_ps(second, d0, d1);
        __m512i idx = _mm512_mask_blend_epi32(second, i0, i1);
        float *slot = best + (int64_t)(first + r) * 16;
        int32_t *slot_row = which + (int64_t)(first + r) * 16;
        __mmask16 nearer = _mm512_cmp_ps_mask(d, _mm512_loadu_ps(slot), _CMP_LT_OQ);
        _mm512_mask_storeu_ps(slot, nearer, d);
        _mm512_mask_storeu_epi32(slot_row, nearer, idx);
    }
}

typedef struct {
    const hy_job *job;
    const uint32_t *packed;
    const float *norms;
    const bf_map *bm;  /* nimages x nmaps */
    int64_t *next;     /* the next step of blocks, shared */
    int64_t out_rows;
    float *best;       /* out_rows x 16 */
    int32_t *which;    /* out_rows x 16 */
    int failed;
} bf_share;

static void bf_run(bf_share *s) {
    const hy_job *job = s->job;
    int pairs = (job->dim + 1) / 2;
    int64_t coarse_rows = largest_coarse_rows(job);
    float *scratch = malloc((size_t)(coarse_rows + 1) * BF_WIDTH * sizeof(float));
    if (!scratch) {
        s->failed = 1;
        return;
    }
    for (int64_t i = 0; i < s->out_rows * 16; i++) {
        s->best[i] = __builtin_inff();
        s->which[i] = -1;
    }
    float *coarse[HY_MAX_MAPS];
    /* A step of blocks at a time, each image in turn against all of it: the step stays in
     * cache across the images and an image's queries and minima across the step's blocks
     * (blocks inside images would stream every image's through the cache per block). */
    int64_t blocks = (job->rows + BF_WIDTH - 1) / BF_WIDTH;
    for (;;) {
        int64_t first = __atomic_fetch_add(s->next, 1, __ATOMIC_RELAXED) * HY_STEP_BLOCKS;
        if (first >= blocks) break;
        int64_t end = first + HY_STEP_BLOCKS < blocks ? first + HY_STEP_BLOCKS : blocks;
        int64_t out_start = 0;
        for (int image = 0; image < job->nimages; image++) {
            const hy_map *maps = job->maps + (int64_t)image * job->nmaps;
            const bf_map *bm = s->bm + (int64_t)image * job->nmaps;
            float *best = s->best + out_start * 16;
            int32_t *which = s->which + out_start * 16;
            for (int64_t blk = first; blk < end; blk++) {
                const uint32_t *block = s->packed + blk * pairs * BF_WIDTH;
                const float *norms = s->norms + blk * BF_WIDTH;
                float *at = scratch;
                for (int m = 1; m < job->nmaps; m++) {
                    coarse[m] = at;
                    at += (int64_t)maps[m].n * BF_WIDTH;
                    const uint32_t *b = block + bm[m].first_pair * BF_WIDTH;
                    int j = 0;
                    for (; j + BF_TILE <= maps[m].n; j += BF_TILE)
                        bf_products(BF_TILE, bm[m].rows + (int64_t)j * bm[m].pairs, bm[m].pairs, b,
                                    coarse[m] + (int64_t)j * BF_WIDTH);
                    for (; j < maps[m].n; j++)
                        bf_products(1, bm[m].rows + (int64_t)j * bm[m].pairs, bm[m].pairs, b,
                                    coarse[m] + (int64_t)j * BF_WIDTH);
                }
                int32_t row0 = (int32_t)(blk * BF_WIDTH);
                int i = 0;
                for (; i + BF_TILE <= maps[0].n; i += BF_TILE)
                    bf_tile(BF_TILE, maps, bm, job->nmaps, i, block, norms, coarse, row0, best, which);
                for (; i < maps[0].n; i++)
                    bf_tile(1, maps, bm, job->nmaps, i, block, norms, coarse, row0, best, which);
            }
            out_start += maps[0].n;
        }
    }
    free(scratch);
}

/* Euclidean norm of each of n rows of c floats. */
static void row_norms(const float *x, int64_t n, int c, float *out) {
    for (int64_t i = 0; i < n; i++) {
        double s = 0.0;
        for (int k = 0; k < c; k++) s += (double)x[i * c + k] * x[i * c + k];
        out[i] = (float)sqrt(s);
    }
}

/* The output row's whole query in float32: its own channels and each coarse map's mixed
 * through its taps, as the float32 copies see it (mixing first, then the product). */
static void full_query(const hy_job *job, const hy_map *maps, int64_t i, float *query) {
    memset(query, 0, (size_t)job->dim * sizeof(float));
    for (int m = 0; m < job->nmaps; m++) {
        const hy_map *map = &maps[m];
        float *out = query + map->offset;
        if (m == 0) {
            memcpy(out, map->rows + i * map->c, (size_t)map->c * sizeof(float));
            continue;
        }
        for (int t = 0; t < HY_TAPS; t++) {
            float w = map->weights[i * HY_TAPS + t];
            const float *q = map->rows + (int64_t)map->taps[i * HY_TAPS + t] * map->c;
            for (int k = 0; k < map->c; k++) out[k] += w * q[k];
        }
    }
}

/* ||b||^2 - 2 q.b in float32 for one bank row (`query` holds -2 q), 16 lanes at a time. */
static float exact_value(const hy_job *job, const float *query, int64_t row, const float *norms) {
    int dim = job->dim, k = 0;
    __m512 acc = _mm512_setzero_ps();
    for (; k + 16 <= dim; k += 16) {
        __m512 b = job->half ? _mm512_cvtph_ps(_mm256_loadu_si256(
                                   (const __m256i *)((const _Float16 *)job->bank + row * dim + k)))
                             : _mm512_loadu_ps((const float *)job->bank + row * dim + k);
        b = _mm512_sub_ps(b, _mm512_loadu_ps(job->mean + k));
        acc = _mm512_fmadd_ps(_mm512_loadu_ps(query + k), b, acc);
    }
    float total = _mm512_reduce_add_ps(acc);
    for (; k < dim; k++) {
        float x = job->half ? (float)((const _Float16 *)job->bank)[row * dim + k]
                            : ((const float *)job->bank)[row * dim + k];
        total += query[k] * (x - job->mean[k]);
    }
    return total + norms[row];
}

/* Measures again, in float32, the candidates of output rows [first, last) of one image
 * (`out` is its first row among all images' rows), and writes the least to best. `norms`
 * holds the image's query row norms: its own map's rows, then each coarse map's. */
static void bf_measure(const hy_job *job, const hy_map *maps, const bf_share *shares, int threads,
                       const float *norms, const float *bank_norms, int64_t out, int64_t first, int64_t last,
                       float *whole, float *best) {
    /* bfloat16 keeps 8 significant bits: each product of two rounded numbers is within
     * 2^-7 (+2^-16) of the exact one, and the float32 sums add dim x 2^-23 at most. */
    const double rounding = ldexp(1.0, -7) + ldexp(1.0, -16) + job->dim * ldexp(1.0, -23);
    const float *map_norms[HY_MAX_MAPS];
    const float *at = norms + maps[0].n;
    for (int m = 1; m < job->nmaps; m++) {
        map_norms[m] = at;
        at += maps[m].n;
    }
    int64_t bytes = (int64_t)job->dim * (job->half ? 2 : 4);
    for (int64_t i = first; i < last; i++) {
        int64_t o = out + i;
        double query = norms[i];
        for (int m = 1; m < job->nmaps; m++)
            for (int t = 0; t < HY_TAPS; t++)
                query += maps[m].weights[i * HY_TAPS + t] * map_norms[m][maps[m].taps[i * HY_TAPS + t]];
        /* A slot is within rounding x ||q|| x ||b|| of its float32 value (Cauchy-Schwarz);
         * a row whose least possible value exceeds the least upper bound cannot be nearest. */
        double scale = rounding * query, upper = INFINITY;
        for (int t = 0; t < threads; t++)
            for (int l = 0; l < 16; l++) {
                int32_t row = shares[t].which[o * 16 + l];
                if (row >= 0) upper = fmin(upper, shares[t].best[o * 16 + l] + scale * sqrt(bank_norms[row]));
            }
        int32_t rows[HY_MAX_THREADS * 16];
        int count = 0;
        for (int t = 0; t < threads; t++)
            for (int l = 0; l < 16; l++) {
                int32_t row = shares[t].which[o * 16 + l];
                if (row < 0 || shares[t].best[o * 16 + l] - scale * sqrt(bank_norms[row]) > upper) continue;
                rows[count++] = row;
                /* The rows are scattered over the bank: fetch them while the query is mixed. */
                const char *p = (const char *)job->bank + (int64_t)row * bytes;
                for (int64_t b = 0; b < bytes; b += 64) __builtin_prefetch(p + b);
            }
        full_query(job, maps, i, whole);
        float result = __builtin_inff();
        for (int c = 0; c < count; c++) result = fminf(result, exact_value(job, whole, rows[c], bank_norms));
        best[o] = result;
    }
}

#pragma GCC pop_options
