// One LSTM layer's recurrence on a CPU in float32, for training: gates_t = xp_t + bias + h_{t-1} W_hh^T in
// PyTorch's gate order (i, f, g, o); deepq/models/cpu_lstm.py builds and calls it. The products over all
// steps (the input projection, the weight gradients) stay with torch's BLAS; this file holds only what is
// sequential. Each window runs all T steps with its h and c in registers and W_hh in L1, two windows at a
// time so that each weight load feeds two FMAs. Compiled per hidden size HID (a multiple of 16) so that every loop has a constant trip count
// and the accumulators stay in registers; GCC's vector extensions map the 16-wide vectors onto whatever the
// CPU has (one AVX-512 register, two AVX2 ones, four NEON ones).
#include <stddef.h>

#define H HID
#define G (4 * HID)

typedef float vf __attribute__((vector_size(64)));
typedef float vfu __attribute__((vector_size(64), aligned(4)));
typedef int vi __attribute__((vector_size(64)));
enum { V = 16, NH = H / V, NG = G / V };

static inline vf load(const float *p) { return *(const vfu *)p; }
static inline void store(float *p, vf x) { *(vfu *)p = x; }
static inline vf bc(float x) { return vf{} + x; }

// exp(x), Cephes' expf: x = n ln2 + r with |r| <= ln2 / 2, a degree-6 polynomial for e^r, 2^n written into
// the exponent bits; ~1 ulp over the clamped range [-87, 87].
static inline vf vexp(vf x)
{
    x = x < bc(-87.0f) ? bc(-87.0f) : x;
    x = x > bc(87.0f) ? bc(87.0f) : x;
    const vf t = x * 1.44269504088896341f + 12582912.0f;  // round to nearest through the 2^23 + 2^22 shift
    const vf n = t - 12582912.0f;
    const vf r = (x - n * 0.693359375f) + n * 2.12194440e-4f;
    vf p = bc(1.9875691500e-4f);
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    const vi bits = (__builtin_convertvector(n, vi) + 127) << 23;
    return p * (vf)bits;
}

static inline vf vsigm(vf x) { return 1.0f / (1.0f + vexp(-x)); }
static inline vf vtanh(vf x) { return 2.0f / (1.0f + vexp(-2.0f * x)) - 1.0f; }

// R (1 or 2) windows through all T steps; h and c live in registers, W_hh^T ([H, G]) in L1.
template <int R>
static inline void forward_rows(int T, const float *__restrict xp, const float *__restrict bias,
                                const float *__restrict wt, float *__restrict hs,
                                float *__restrict hp, float *__restrict cs, float *__restrict tcs,
                                float *__restrict acts)
{
    vf h[R][NH], c[R][NH];
    float hbuf[R][H] __attribute__((aligned(64)));
    for (int r = 0; r < R; r++)
        for (int q = 0; q < NH; q++) h[r][q] = c[r][q] = bc(0.0f);
    for (int t = 0; t < T; t++) {
        vf z[R][NG];
#pragma GCC unroll 16
        for (int r = 0; r < R; r++) {
#pragma GCC unroll 16
            for (int q = 0; q < NG; q++)
                z[r][q] = load(xp + ((size_t)r * T + t) * G + q * V) + load(bias + r * G + q * V);
#pragma GCC unroll 16
            for (int q = 0; q < NH; q++) store(hbuf[r] + q * V, h[r][q]);
        }
        for (int k = 0; k < H; k++) {
            const float *w = wt + (size_t)k * G;
#pragma GCC unroll 16
            for (int q = 0; q < NG; q++) {
                const vf wq = load(w + q * V);
#pragma GCC unroll 2
                for (int r = 0; r < R; r++) z[r][q] += hbuf[r][k] * wq;
            }
        }
#pragma GCC unroll 2
        for (int r = 0; r < R; r++) {
            const size_t o1 = ((size_t)r * T + t) * H, o4 = ((size_t)r * T + t) * G;
#pragma GCC unroll 16
            for (int q = 0; q < NH; q++) {
                const vf ig = vsigm(z[r][q]), fg = vsigm(z[r][NH + q]);
                const vf gg = vtanh(z[r][2 * NH + q]), og = vsigm(z[r][3 * NH + q]);
                const vf cn = fg * c[r][q] + ig * gg;
                const vf tc = vtanh(cn);
                store(acts + o4 + q * V, ig);
                store(acts + o4 + H + q * V, fg);
                store(acts + o4 + 2 * H + q * V, gg);
                store(acts + o4 + 3 * H + q * V, og);
                store(hp + o1 + q * V, h[r][q]);
                store(cs + o1 + q * V, cn);
                store(tcs + o1 + q * V, tc);
                c[r][q] = cn;
                h[r][q] = og * tc;
                store(hs + o1 + q * V, h[r][q]);
            }
        }
    }
}

// The same R windows backwards through time: dgates from dh, dc and the forward's stored activations, and
// their sum over the steps (the per-window bias's gradient).
template <int R>
static inline void backward_rows(int T, const float *__restrict dhs, const float *__restrict cs,
                                 const float *__restrict tcs, const float *__restrict acts,
                                 const float *__restrict w, float *__restrict dg, float *__restrict db)
{
    vf dh[R][NH], dc[R][NH];
    for (int r = 0; r < R; r++)
        for (int q = 0; q < NH; q++) dh[r][q] = dc[r][q] = bc(0.0f);
    for (int j = 0; j < R * G; j++) db[j] = 0.0f;
    for (int t = T - 1; t >= 0; t--) {
#pragma GCC unroll 2
        for (int r = 0; r < R; r++) {
            const size_t o1 = ((size_t)r * T + t) * H, o4 = ((size_t)r * T + t) * G;
#pragma GCC unroll 16
            for (int q = 0; q < NH; q++) {
                const size_t j1 = o1 + q * V, j4 = o4 + q * V;
                const vf ig = load(acts + j4), fg = load(acts + j4 + H);
                const vf gg = load(acts + j4 + 2 * H), og = load(acts + j4 + 3 * H), tc = load(tcs + j1);
                const vf cprev = t ? load(cs + j1 - H) : bc(0.0f);
                const vf dht = load(dhs + j1) + dh[r][q];
                const vf dct = dc[r][q] + dht * og * (1.0f - tc * tc);
                const vf d[4] = {dct * gg * ig * (1.0f - ig), dct * cprev * fg * (1.0f - fg),
                                 dct * ig * (1.0f - gg * gg), dht * tc * og * (1.0f - og)};
#pragma GCC unroll 4
                for (int k = 0; k < 4; k++) {
                    float *b = db + r * G + k * H + q * V;
                    store(dg + j4 + k * H, d[k]);
                    store(b, load(b) + d[k]);
                }
                dc[r][q] = dct * fg;
            }
        }
        // dh_{t-1} = dgates_t W_hh, two partial sums per output vector to keep the FMA units busy
        vf acc[R][2][NH];
        for (int r = 0; r < R; r++)
            for (int q = 0; q < NH; q++) acc[r][0][q] = acc[r][1][q] = bc(0.0f);
        for (int j = 0; j < G; j += 2) {
#pragma GCC unroll 2
            for (int s = 0; s < 2; s++) {
                const float *wr = w + (size_t)(j + s) * H;
#pragma GCC unroll 16
                for (int q = 0; q < NH; q++) {
                    const vf wq = load(wr + q * V);
#pragma GCC unroll 2
                    for (int r = 0; r < R; r++) acc[r][s][q] += dg[((size_t)r * T + t) * G + j + s] * wq;
                }
            }
        }
        for (int r = 0; r < R; r++)
            for (int q = 0; q < NH; q++) dh[r][q] = acc[r][0][q] + acc[r][1][q];
    }
}

// A 32-bit integer hash (Chris Wellons' lowbias32) of a counter: the dropout masks' random bits.
static inline unsigned hash32(unsigned x)
{
    x ^= x >> 16;
    x *= 0x7feb352dU;
    x ^= x >> 15;
    x *= 0x846ca68bU;
    x ^= x >> 16;
    return x;
}

extern "C" {

// out[i] = x[i] / (1 - p) with probability 1 - p, else 0. Element i's draw is a hash of (seed, i): a pure
// function of both, so the backward recomputes the same mask (call it on the gradient) instead of storing it.
void dropout_apply(long n, float p, unsigned seed, const float *__restrict x, float *__restrict out)
{
    const unsigned cut = (unsigned)((double)p * 4294967296.0);  // 0 <= p < 1: keep when the hash >= cut
    const float scale = 1.0f / (1.0f - p);
    const unsigned s = hash32(seed);
    for (long i = 0; i < n; i++) out[i] = hash32(s ^ (unsigned)i) >= cut ? x[i] * scale : 0.0f;
}

int lstm_hidden_size(void) { return H; }

// xp [B, T, G] (x W_ih^T), bias [B, G] (per window: the biases and any static input's projection), wt [H, G]
// (W_hh^T) -> hs, hp (h_{t-1}), cs, tcs (tanh c) [B, T, H] and acts [B, T, G] (i, f, g, o after their
// nonlinearities), all contiguous.
void lstm_forward(int B, int T, const float *xp, const float *bias, const float *wt, float *hs, float *hp,
                  float *cs, float *tcs, float *acts)
{
    int b = 0;
    for (; b + 2 <= B; b += 2) {
        const size_t s1 = (size_t)b * T * H, s4 = (size_t)b * T * G;
        forward_rows<2>(T, xp + s4, bias + (size_t)b * G, wt, hs + s1, hp + s1, cs + s1, tcs + s1, acts + s4);
    }
    if (b < B) {
        const size_t s1 = (size_t)b * T * H, s4 = (size_t)b * T * G;
        forward_rows<1>(T, xp + s4, bias + (size_t)b * G, wt, hs + s1, hp + s1, cs + s1, tcs + s1, acts + s4);
    }
}

// dhs [B, T, H] (the loss's gradient of hs), the forward's cs, tcs, acts, w [G, H] (W_hh) -> dg [B, T, G],
// the gradient of the gates before their nonlinearities (= of xp), and db [B, G], its sum over the steps.
void lstm_backward(int B, int T, const float *dhs, const float *cs, const float *tcs, const float *acts,
                   const float *w, float *dg, float *db)
{
    int b = 0;
    for (; b + 2 <= B; b += 2) {
        const size_t s1 = (size_t)b * T * H, s4 = (size_t)b * T * G;
        backward_rows<2>(T, dhs + s1, cs + s1, tcs + s1, acts + s4, w, dg + s4, db + (size_t)b * G);
    }
    if (b < B) {
        const size_t s1 = (size_t)b * T * H, s4 = (size_t)b * T * G;
        backward_rows<1>(T, dhs + s1, cs + s1, tcs + s1, acts + s4, w, dg + s4, db + (size_t)b * G);
    }
}
}
