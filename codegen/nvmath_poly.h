/* nvmath_poly.h: polynomial coefficients of nvmath.c, shared with the CPU
 * tests (tests/cpu/test_nvmath.c evaluates the same formula in f32 and
 * checks its error bound), so the bound is tested on the numbers the GPU
 * uses.
 *
 * erf(x) = sign(x) (1 - 2^p(t)), t = min(|x|, NVM_ERF_CLAMP),
 * p(t) = t q(t), q the degree-7 polynomial below, lowest order first. q is a
 * weighted minimax fit of log2(erfc(t)) / t on [0, 4] (Lawson's iteration
 * on a Chebyshev grid, weight erfc(t) ln 2: an error d in p moves the
 * result by about erfc(t) ln 2 d, so only the absolute error of erf is
 * minimised), then rounded to f32. p(0) = 0 makes erf(0) = 0 exactly;
 * p(4) = -26.04, so 1 - 2^p rounds to exactly 1 from the clamp on.
 * Evaluated in f32 with fma and an exact exp2: max absolute error 8.9e-8
 * (at x = 0.61), see test_nvmath.c.
 */
#ifndef TJ_NVMATH_POLY_H
#define TJ_NVMATH_POLY_H

#define NVM_ERF_CLAMP 4.0f
#define NVM_ERF_DEG 8

static const float nvm_erf_q[NVM_ERF_DEG] = {
  -1.627908587e+00f, -9.184163809e-01f, -1.484816372e-01f, 2.825375274e-02f,
  -7.747228374e-04f, -1.489376999e-03f, 4.454851733e-04f, -4.535553671e-05f,
};

// erf(c x) for a constant c > 0 as the same formula in x: with t = c t0,
// t q(t) = t0 q~(t0) where q~_k = c^(k+1) q_k, and t0 = min(|x|, clamp / c).
// The scale costs nothing per element (gelu's erf(x / sqrt 2) loses its
// multiply). Coefficients scaled in double, then rounded to f32.
static inline void nvm_erf_scaled(double c, float q[NVM_ERF_DEG], float *clamp) {
  double ck = c;
  for (int k = 0; k < NVM_ERF_DEG; k++, ck *= c) q[k] = (float)((double)nvm_erf_q[k] * ck);
  *clamp = (float)((double)NVM_ERF_CLAMP / c);
}

#endif
