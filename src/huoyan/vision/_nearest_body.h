/* One instruction set's copy of the fused search, included by _nearest.c once per target.
 *
 * Before including: LANES (floats per vector), TILE (query rows per register tile) and
 * SFX (the suffix of this copy's names). The bank is taken WIDTH = 2 x LANES rows at a
 * time, centred and transposed into a small block that stays in L1; each tile of TILE
 * queries keeps its TILE x WIDTH products in registers, adds the coarse maps' products
 * through their bilinear taps and the rows' squared norms, and keeps the per-lane minimum.
 */

#define WIDTH (2 * LANES)
#define NAME2(a, b) a##_##b
#define NAME(a, b) NAME2(a, b)

typedef float NAME(vec, SFX) __attribute__((vector_size(LANES * 4)));
typedef int NAME(ivec, SFX) __attribute__((vector_size(LANES * 4)));
#define V NAME(vec, SFX)
#define VI NAME(ivec, SFX)

static inline __attribute__((always_inline)) V NAME(load, SFX)(const float *p) {
    V v;
    __builtin_memcpy(&v, p, sizeof v);
    return v;
}

static inline __attribute__((always_inline)) void NAME(store, SFX)(float *p, V v) {
    __builtin_memcpy(p, &v, sizeof v);
}

static inline __attribute__((always_inline)) V NAME(vmin, SFX)(V a, V b) {
    VI keep = a < b;
    return (V)((keep & (VI)a) | (~keep & (VI)b));
}

/* Centre bank rows [row0, row0 + rows) and lay them out as block[k * WIDTH + lane]; lanes
 * past the last row get zeros and an infinite norm, so they never win. */
static void NAME(prepare, SFX)(const void *bank, int half, int64_t row0, int rows, int dim,
                               const float *mean, float *block, float *norms) {
    for (int lane = 0; lane < WIDTH; lane++) {
        float sum = 0.0f;
        if (lane < rows) {
            if (half) {
                const _Float16 *src = (const _Float16 *)bank + (row0 + lane) * (int64_t)dim;
                for (int k = 0; k < dim; k++) {
                    float x = (float)src[k] - mean[k];
                    block[k * WIDTH + lane] = x;
                    sum += x * x;
                }
            } else {
                const float *src = (const float *)bank + (row0 + lane) * (int64_t)dim;
                for (int k = 0; k < dim; k++) {
                    float x = src[k] - mean[k];
                    block[k * WIDTH + lane] = x;
                    sum += x * x;
                }
            }
            norms[lane] = sum;
        } else {
            for (int k = 0; k < dim; k++) block[k * WIDTH + lane] = 0.0f;
            norms[lane] = __builtin_inff();
        }
    }
}

/* out[r * WIDTH + lane] = rows[r] . block row `lane` over channels [offset, offset + c). */
static inline __attribute__((always_inline)) void NAME(products, SFX)(const int R, const float *rows, int c,
                                                                      const float *block, float *out) {
    V acc[TILE][2];
    for (int r = 0; r < R; r++) acc[r][0] = acc[r][1] = (V){0};
    for (int k = 0; k < c; k++) {
        V b0 = NAME(load, SFX)(block + k * WIDTH);
        V b1 = NAME(load, SFX)(block + k * WIDTH + LANES);
        for (int r = 0; r < R; r++) {
            float q = rows[r * c + k];
            acc[r][0] += q * b0;
            acc[r][1] += q * b1;
        }
    }
    for (int r = 0; r < R; r++) {
        NAME(store, SFX)(out + r * WIDTH, acc[r][0]);
        NAME(store, SFX)(out + r * WIDTH + LANES, acc[r][1]);
    }
}

/* One tile of R output rows starting at `first`: its own products, the coarse maps'
 * products through their taps, the bank norms, then the running per-lane minimum. */
static inline __attribute__((always_inline)) void NAME(tile, SFX)(const int R, const hy_map *maps, int nmaps,
                                                                  int first, const float *block,
                                                                  const float *norms, float *const *coarse,
                                                                  float *best) {
    const hy_map *own = &maps[0];
    const float *rows = own->rows + (int64_t)first * own->c;
    const float *b = block + own->offset * WIDTH;
    V acc[TILE][2];
    for (int r = 0; r < R; r++) acc[r][0] = acc[r][1] = (V){0};
    for (int k = 0; k < own->c; k++) {
        V b0 = NAME(load, SFX)(b + k * WIDTH);
        V b1 = NAME(load, SFX)(b + k * WIDTH + LANES);
        for (int r = 0; r < R; r++) {
            float q = rows[r * own->c + k];
            acc[r][0] += q * b0;
            acc[r][1] += q * b1;
        }
    }
    for (int m = 1; m < nmaps; m++) {
        const int32_t *taps = maps[m].taps + (int64_t)first * HY_TAPS;
        const float *weights = maps[m].weights + (int64_t)first * HY_TAPS;
        for (int r = 0; r < R; r++) {
            for (int t = 0; t < HY_TAPS; t++) {
                float w = weights[r * HY_TAPS + t];
                const float *p = coarse[m] + (int64_t)taps[r * HY_TAPS + t] * WIDTH;
                acc[r][0] += w * NAME(load, SFX)(p);
                acc[r][1] += w * NAME(load, SFX)(p + LANES);
            }
        }
    }
    V n0 = NAME(load, SFX)(norms);
    V n1 = NAME(load, SFX)(norms + LANES);
    for (int r = 0; r < R; r++) {
        V d = NAME(vmin, SFX)(acc[r][0] + n0, acc[r][1] + n1);
        float *slot = best + (int64_t)(first + r) * LANES;
        NAME(store, SFX)(slot, NAME(vmin, SFX)(NAME(load, SFX)(slot), d));
    }
}

/* One thread's share: bank rows [row0, row1) against every image; best holds LANES
 * running minima per output row, images one after another. */
static void NAME(search, SFX)(const hy_job *job, int64_t row0, int64_t row1, float *block, float *norms,
                              float *scratch, float *best) {
    float *coarse[HY_MAX_MAPS];
    int64_t out_start = 0;
    for (int image = 0; image < job->nimages; image++) {
        const hy_map *maps = job->maps + (int64_t)image * job->nmaps;
        float *at = scratch;
        for (int m = 1; m < job->nmaps; m++) {
            coarse[m] = at;
            at += (int64_t)maps[m].n * WIDTH;
        }
        float *image_best = best + out_start * LANES;
        for (int64_t row = row0; row < row1; row += WIDTH) {
            int rows = (int)(row1 - row < WIDTH ? row1 - row : WIDTH);
            NAME(prepare, SFX)(job->bank, job->half, row, rows, job->dim, job->mean, block, norms);
            for (int m = 1; m < job->nmaps; m++) {
                const hy_map *map = &maps[m];
                const float *b = block + map->offset * WIDTH;
                int j = 0;
                for (; j + TILE <= map->n; j += TILE)
                    NAME(products, SFX)(TILE, map->rows + (int64_t)j * map->c, map->c, b,
                                        coarse[m] + (int64_t)j * WIDTH);
                for (; j < map->n; j++)
                    NAME(products, SFX)(1, map->rows + (int64_t)j * map->c, map->c, b,
                                        coarse[m] + (int64_t)j * WIDTH);
            }
            int i = 0;
            for (; i + TILE <= maps[0].n; i += TILE)
                NAME(tile, SFX)(TILE, maps, job->nmaps, i, block, norms, coarse, image_best);
            for (; i < maps[0].n; i++)
                NAME(tile, SFX)(1, maps, job->nmaps, i, block, norms, coarse, image_best);
        }
        out_start += maps[0].n;
    }
}

#undef V
#undef VI
#undef WIDTH
#undef NAME
#undef NAME2
