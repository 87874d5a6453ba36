/* test_sampler.c - the sampler distribution against a float64 reference of
 * the documented semantics (temperature, top-k, top-p, ties), seeded
 * reproducibility, empirical frequencies (chi-square), and bad input. */
#include "m4test.h"

typedef struct ent {
    double p;
    size_t i;
} ent;

static int cmp_ent(const void* a, const void* b) {
    const ent* x = (const ent*)a;
    const ent* y = (const ent*)b;
    if (x->p != y->p) return x->p > y->p ? -1 : 1;
    return (x->i > y->i) - (x->i < y->i);
}

/* reference: softmax(logits / T) -> top-k -> top-p (renormalised within top-k) -> renormalise */
static void reference(const float* logits, size_t V, double T, size_t k, double top_p, double* probs) {
    memset(probs, 0, V * sizeof(double));
    if (T == 0.0) {
        size_t best = 0;
        for (size_t i = 1; i < V; i++) best = logits[i] > logits[best] ? i : best;
        probs[best] = 1.0;
        return;
    }
    ent* e = (ent*)calloc(V, sizeof *e);
    double m = -INFINITY, sum = 0.0;
    for (size_t i = 0; i < V; i++) m = fmax(m, logits[i]);
    for (size_t i = 0; i < V; i++) {
        e[i].p = isinf(m) ? (logits[i] == m) : exp(((double)logits[i] - m) / T);
        e[i].i = i;
        sum += e[i].p;
    }
    for (size_t i = 0; i < V; i++) e[i].p /= sum;
    qsort(e, V, sizeof *e, cmp_ent);
    size_t n = (k > 0 && k < V) ? k : V;
    double kept = 0.0;
    for (size_t i = 0; i < n; i++) kept += e[i].p;
    if (top_p < 1.0) {
        double cum = 0.0;
        size_t keep = 0;
        while (keep < n && cum < top_p * kept) cum += e[keep++].p;
        n = keep ? keep : 1;
    }
    double total = 0.0;
    for (size_t i = 0; i < n; i++) total += e[i].p;
    for (size_t i = 0; i < n; i++) probs[e[i].i] = e[i].p / total;
    free(e);
}

static void check_distribution(const float* logits, size_t V, float T, uint32_t k, float top_p) {
    mind4_sampler* s = NULL;
    CHECK_OK(mind4_sampler_create(&s));
    CHECK_OK(mind4_sampler_set_params(s, T, k, top_p));
    float* got = falloc(V);
    double* want = dalloc(V);
    CHECK_OK(mind4_sampler_probabilities(s, logits, V, got));
    reference(logits, V, T, k, top_p, want);
    double worst = 0.0, sum = 0.0;
    for (size_t i = 0; i < V; i++) {
        worst = fmax(worst, fabs(got[i] - want[i]));
        sum += got[i];
    }
    CHECK(worst < 2e-6, "distribution V=%zu T=%g k=%u p=%g: max abs err %.3g", V, (double)T, k, (double)top_p, worst);
    CHECK(fabs(sum - 1.0) < 1e-5, "distribution sums to %.8f", sum);
    /* draws only ever pick tokens with probability > 0 */
    CHECK_OK(mind4_sampler_set_seed(s, g_seed));
    for (int d = 0; d < 50; d++) {
        uint32_t tok = 0;
        CHECK_OK(mind4_sampler_sample(s, logits, V, &tok));
        CHECK(tok < V && want[tok] > 0.0, "drew token %u with reference probability %g", tok, tok < V ? want[tok] : -1.0);
    }
    mind4_sampler_release(s);
    free(got), free(want);
}

static void test_distributions(void) {
    for (int rep = 0; rep < 60; rep++) {
        size_t V = rnd_int(1, 300);
        float* logits = falloc(V);
        rnd_fill(logits, V, 3.0);
        if (V > 5 && rep % 3 == 0) logits[4] = logits[2] = logits[1]; /* ties */
        if (V > 7 && rep % 5 == 0) logits[6] = -INFINITY;
        float T = (rep % 7 == 0) ? 0.0f : (float)(0.1 + 2.0 * rnd_unit());
        uint32_t k = rep % 2 ? (uint32_t)rnd_int(0, V + 2) : 0;
        float p = rep % 3 ? (float)(0.05 + 0.95 * rnd_unit()) : 1.0f;
        check_distribution(logits, V, T, k, p);
        free(logits);
    }
    float inf_logits[4] = {1.0f, INFINITY, 3.0f, INFINITY};
    check_distribution(inf_logits, 4, 1.0f, 0, 1.0f);
    float tie[3] = {2.0f, 5.0f, 5.0f};
    check_distribution(tie, 3, 0.0f, 0, 1.0f);
    check_distribution(tie, 3, 1.0f, 1, 1.0f); /* top-1 of a tie keeps the lower index */
}

static void test_frequencies(void) {
    size_t V = 8, N = 40000;
    float logits[8];
    rnd_fill(logits, V, 1.0);
    mind4_sampler* s = NULL;
    CHECK_OK(mind4_sampler_create(&s));
    CHECK_OK(mind4_sampler_set_params(s, 0.9f, 6, 0.95f));
    CHECK_OK(mind4_sampler_set_seed(s, g_seed));
    double want[8];
    reference(logits, V, 0.9, 6, 0.95, want);
    size_t count[8] = {0};
    for (size_t d = 0; d < N; d++) {
        uint32_t tok;
        CHECK_OK(mind4_sampler_sample(s, logits, V, &tok));
        if (tok < V) count[tok]++;
    }
    double chi2 = 0.0;
    for (size_t i = 0; i < V; i++) {
        if (want[i] > 0) {
            double e = want[i] * (double)N;
            chi2 += ((double)count[i] - e) * ((double)count[i] - e) / e;
        } else {
            CHECK(count[i] == 0, "token %zu drawn %zu times with probability 0", i, count[i]);
        }
    }
    CHECK(chi2 < 45.0, "chi-square %.1f: draws do not follow the distribution", chi2);
    /* the same seed gives the same draws, another seed other draws */
    uint32_t a[64], b[64], c2[64];
    CHECK_OK(mind4_sampler_set_seed(s, 1234));
    for (int i = 0; i < 64; i++) mind4_sampler_sample(s, logits, V, &a[i]);
    CHECK_OK(mind4_sampler_set_seed(s, 1234));
    for (int i = 0; i < 64; i++) mind4_sampler_sample(s, logits, V, &b[i]);
    CHECK_OK(mind4_sampler_set_seed(s, 1235));
    for (int i = 0; i < 64; i++) mind4_sampler_sample(s, logits, V, &c2[i]);
    CHECK(memcmp(a, b, sizeof a) == 0, "same seed, different draws");
    CHECK(memcmp(a, c2, sizeof a) != 0, "different seeds, same 64 draws");
    mind4_sampler_release(s);
}

static void test_bad_input(void) {
    mind4_sampler* s = NULL;
    CHECK_OK(mind4_sampler_create(&s));
    CHECK_STATUS(mind4_sampler_set_params(s, -1.0f, 0, 1.0f), MIND4_INVALID_ARGUMENT);
    CHECK_STATUS(mind4_sampler_set_params(s, NAN, 0, 1.0f), MIND4_INVALID_ARGUMENT);
    CHECK_STATUS(mind4_sampler_set_params(s, INFINITY, 0, 1.0f), MIND4_INVALID_ARGUMENT);
    CHECK_STATUS(mind4_sampler_set_params(s, 1.0f, 0, 0.0f), MIND4_INVALID_ARGUMENT);
    CHECK_STATUS(mind4_sampler_set_params(s, 1.0f, 0, 1.5f), MIND4_INVALID_ARGUMENT);
    CHECK_STATUS(mind4_sampler_set_params(s, 1.0f, 0, NAN), MIND4_INVALID_ARGUMENT);
    CHECK(strstr(mind4_last_error(), "top_p") != NULL, "message: %s", mind4_last_error());
    float t, p;
    uint32_t k;
    CHECK_OK(mind4_sampler_get_params(s, &t, &k, &p));
    CHECK(t == 1.0f && k == 0 && p == 1.0f, "failed set_params changed the parameters");
    float logits[3] = {1.0f, NAN, 2.0f};
    uint32_t tok = 77;
    CHECK_STATUS(mind4_sampler_sample(s, logits, 3, &tok), MIND4_INVALID_ARGUMENT);
    CHECK(tok == 77, "token_out written on failure");
    float probs[3];
    CHECK_STATUS(mind4_sampler_probabilities(s, logits, 3, probs), MIND4_INVALID_ARGUMENT);
    CHECK_STATUS(mind4_sampler_sample(s, logits, 0, &tok), MIND4_INVALID_ARGUMENT);
    CHECK_STATUS(mind4_sampler_sample(s, NULL, 3, &tok), MIND4_INVALID_ARGUMENT);
    CHECK_STATUS(mind4_sampler_set_params(NULL, 1.0f, 0, 1.0f), MIND4_INVALID_ARGUMENT);
    CHECK_OK(mind4_sampler_retain(s));
    CHECK_OK(mind4_sampler_release(s));
    CHECK_OK(mind4_sampler_release(s));
    CHECK_OK(mind4_sampler_release(NULL));
}

int main(void) {
    test_init("test_sampler");
    test_distributions();
    test_frequencies();
    test_bad_input();
    return test_finish("test_sampler");
}
