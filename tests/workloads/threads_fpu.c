/* threads_fpu: 4 threads keep distinctive values live in vector registers (AVX-512
 * zmm0-31 + k1-k7, or AVX ymm0-15, or SSE xmm0-15, whichever the CPU and kernel
 * enable), in callee-saved general registers, the x87 stack, the x87 control word
 * and MXCSR, while sleeping in raw nanosleep syscalls. After SIGTERM every thread
 * compares its registers with what it loaded, plus its TID and TLS value. */
#include "wl.h"
#include <cpuid.h>
#include <pthread.h>
#include <stddef.h>

#define NTHREADS 4

enum level { LEVEL_SSE, LEVEL_AVX, LEVEL_AVX512 };

struct tstate {
    uint8_t vexp[2048];
    uint8_t vout[2048];
    uint64_t gexp[5];
    uint64_t gout[5];
    uint16_t kexp[8];
    uint16_t kout[8];
    struct timespec ts;
    volatile int *stop;
    volatile int started;
    uint32_t mxcsr_exp, mxcsr_out;
    uint16_t fcw_exp, fcw_out;
    uint32_t pad;
    double x87_exp[2];
    double x87_out[2];
    /* Not touched by the assembly. */
    int idx;
    pid_t tid;
    enum level level;
    char error[256];
} __attribute__((aligned(64)));

_Static_assert(offsetof(struct tstate, vout) == 2048, "layout");
_Static_assert(offsetof(struct tstate, gexp) == 4096, "layout");
_Static_assert(offsetof(struct tstate, gout) == 4136, "layout");
_Static_assert(offsetof(struct tstate, kexp) == 4176, "layout");
_Static_assert(offsetof(struct tstate, kout) == 4192, "layout");
_Static_assert(offsetof(struct tstate, ts) == 4208, "layout");
_Static_assert(offsetof(struct tstate, stop) == 4224, "layout");
_Static_assert(offsetof(struct tstate, started) == 4232, "layout");
_Static_assert(offsetof(struct tstate, mxcsr_exp) == 4236, "layout");
_Static_assert(offsetof(struct tstate, mxcsr_out) == 4240, "layout");
_Static_assert(offsetof(struct tstate, fcw_exp) == 4244, "layout");
_Static_assert(offsetof(struct tstate, fcw_out) == 4246, "layout");
_Static_assert(offsetof(struct tstate, x87_exp) == 4256, "layout");
_Static_assert(offsetof(struct tstate, x87_out) == 4272, "layout");

static volatile int stop_flag;
static struct tstate states[NTHREADS];
static __thread uint64_t tls_value;

/* Common prologue/epilogue: general registers, x87, MXCSR, and the sleep loop. */
#define LOAD_GPR                                                                  \
    "mov 4096(%0), %%rbx\n\t"                                                     \
    "mov 4104(%0), %%r12\n\t"                                                     \
    "mov 4112(%0), %%r13\n\t"                                                     \
    "mov 4120(%0), %%r14\n\t"                                                     \
    "mov 4128(%0), %%r15\n\t"                                                     \
    "ldmxcsr 4236(%0)\n\t"                                                        \
    "fldcw 4244(%0)\n\t"                                                          \
    "fldl 4256(%0)\n\t"                                                           \
    "fldl 4264(%0)\n\t"
#define SLEEP_LOOP                                                                \
    "lea 4208(%0), %%rdi\n\t"                                                     \
    "xor %%esi, %%esi\n\t"                                                        \
    "mov 4224(%0), %%rdx\n\t"                                                     \
    "movl $1, 4232(%0)\n\t"                                                       \
    "1:\n\t"                                                                      \
    "mov $35, %%eax\n\t" /* nanosleep */                                          \
    "syscall\n\t"                                                                 \
    "cmpl $0, (%%rdx)\n\t"                                                        \
    "je 1b\n\t"
#define STORE_GPR                                                                 \
    "mov %%rbx, 4136(%0)\n\t"                                                     \
    "mov %%r12, 4144(%0)\n\t"                                                     \
    "mov %%r13, 4152(%0)\n\t"                                                     \
    "mov %%r14, 4160(%0)\n\t"                                                     \
    "mov %%r15, 4168(%0)\n\t"                                                     \
    "stmxcsr 4240(%0)\n\t"                                                        \
    "fnstcw 4246(%0)\n\t"                                                         \
    "fstpl 4272(%0)\n\t"                                                          \
    "fstpl 4280(%0)\n\t"
#define GPR_CLOBBERS "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "r11", "r12", "r13", "r14", "r15", "memory", "cc"

#define LD_X(n) "movdqu " #n "*16(%0), %%xmm" #n "\n\t"
#define ST_X(n) "movdqu %%xmm" #n ", 2048+" #n "*16(%0)\n\t"
#define LD_Y(n) "vmovdqu " #n "*32(%0), %%ymm" #n "\n\t"
#define ST_Y(n) "vmovdqu %%ymm" #n ", 2048+" #n "*32(%0)\n\t"
#define LD_Z(n) "vmovdqu64 " #n "*64(%0), %%zmm" #n "\n\t"
#define ST_Z(n) "vmovdqu64 %%zmm" #n ", 2048+" #n "*64(%0)\n\t"
#define LD_K(n) "kmovw 4176+" #n "*2(%0), %%k" #n "\n\t"
#define ST_K(n) "kmovw %%k" #n ", 4192+" #n "*2(%0)\n\t"
#define ALL16(M) M(0) M(1) M(2) M(3) M(4) M(5) M(6) M(7) M(8) M(9) M(10) M(11) M(12) M(13) M(14) M(15)
#define HI16(M) M(16) M(17) M(18) M(19) M(20) M(21) M(22) M(23) M(24) M(25) M(26) M(27) M(28) M(29) M(30) M(31)
#define XMM_CLOBBERS "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", \
        "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15"

static void run_sse(struct tstate *t)
{
    __asm__ volatile(ALL16(LD_X) LOAD_GPR SLEEP_LOOP ALL16(ST_X) STORE_GPR
                     :
                     : "r"(t)
                     : GPR_CLOBBERS, XMM_CLOBBERS);
}

__attribute__((target("avx"))) static void run_avx(struct tstate *t)
{
    __asm__ volatile(ALL16(LD_Y) LOAD_GPR SLEEP_LOOP ALL16(ST_Y) STORE_GPR "vzeroupper\n\t"
                     :
                     : "r"(t)
                     : GPR_CLOBBERS, XMM_CLOBBERS);
}

__attribute__((target("avx512f"))) static void run_avx512(struct tstate *t)
{
    __asm__ volatile(ALL16(LD_Z) HI16(LD_Z) LD_K(1) LD_K(2) LD_K(3) LD_K(4) LD_K(5) LD_K(6) LD_K(7)
                     LOAD_GPR SLEEP_LOOP
                     ALL16(ST_Z) HI16(ST_Z) ST_K(1) ST_K(2) ST_K(3) ST_K(4) ST_K(5) ST_K(6) ST_K(7)
                     STORE_GPR "vzeroupper\n\t"
                     :
                     : "r"(t)
                     : GPR_CLOBBERS, XMM_CLOBBERS, "xmm16", "xmm17", "xmm18", "xmm19", "xmm20", "xmm21",
                       "xmm22", "xmm23", "xmm24", "xmm25", "xmm26", "xmm27", "xmm28", "xmm29", "xmm30",
                       "xmm31", "k1", "k2", "k3", "k4", "k5", "k6", "k7");
}

static void reset_fp_control(void)
{
    uint32_t mxcsr = 0x1f80;
    uint16_t fcw = 0x037f;
    __asm__ volatile("ldmxcsr %0\n\tfldcw %1" : : "m"(mxcsr), "m"(fcw));
}

/* CPUID plus XGETBV: the register state the kernel actually enabled. */
static enum level detect_level(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return LEVEL_SSE;
    int osxsave = (c >> 27) & 1, avx = (c >> 28) & 1;
    if (!osxsave || !avx)
        return LEVEL_SSE;
    uint32_t xlo, xhi;
    __asm__ volatile("xgetbv" : "=a"(xlo), "=d"(xhi) : "c"(0));
    if ((xlo & 6) != 6)
        return LEVEL_SSE;
    if (__get_cpuid_max(0, NULL) >= 7) {
        __cpuid_count(7, 0, a, b, c, d);
        int avx512f = (b >> 16) & 1;
        if (avx512f && (xlo & 0xe6) == 0xe6)
            return LEVEL_AVX512;
    }
    return LEVEL_AVX;
}

static void *thread_main(void *arg)
{
    struct tstate *t = arg;
    t->tid = (pid_t)syscall(SYS_gettid);
    tls_value = wl_pattern(0x715, (uint64_t)t->idx);
    switch (t->level) {
    case LEVEL_AVX512:
        run_avx512(t);
        break;
    case LEVEL_AVX:
        run_avx(t);
        break;
    default:
        run_sse(t);
        break;
    }
    reset_fp_control();

    size_t vbytes = t->level == LEVEL_AVX512 ? 2048 : t->level == LEVEL_AVX ? 512 : 256;
    for (size_t i = 0; i < vbytes; i++) {
        if (t->vout[i] != t->vexp[i]) {
            size_t width = t->level == LEVEL_AVX512 ? 64 : t->level == LEVEL_AVX ? 32 : 16;
            snprintf(t->error, sizeof t->error,
                     "thread %d: vector register %zu byte %zu is 0x%02x, expected 0x%02x", t->idx,
                     i / width, i % width, t->vout[i], t->vexp[i]);
            return NULL;
        }
    }
    static const char *gpr_names[5] = { "rbx", "r12", "r13", "r14", "r15" };
    for (int i = 0; i < 5; i++)
        if (t->gout[i] != t->gexp[i]) {
            snprintf(t->error, sizeof t->error, "thread %d: %s is 0x%llx, expected 0x%llx", t->idx,
                     gpr_names[i], (unsigned long long)t->gout[i], (unsigned long long)t->gexp[i]);
            return NULL;
        }
    if (t->level == LEVEL_AVX512)
        for (int k = 1; k < 8; k++)
            if (t->kout[k] != t->kexp[k]) {
                snprintf(t->error, sizeof t->error, "thread %d: k%d is 0x%x, expected 0x%x", t->idx, k,
                         t->kout[k], t->kexp[k]);
                return NULL;
            }
    if (t->mxcsr_out != t->mxcsr_exp) {
        snprintf(t->error, sizeof t->error, "thread %d: MXCSR is 0x%x, expected 0x%x", t->idx,
                 t->mxcsr_out, t->mxcsr_exp);
        return NULL;
    }
    if (t->fcw_out != t->fcw_exp) {
        snprintf(t->error, sizeof t->error, "thread %d: x87 control word is 0x%x, expected 0x%x",
                 t->idx, t->fcw_out, t->fcw_exp);
        return NULL;
    }
    /* fstpl pops in reverse order of the loads. */
    if (t->x87_out[0] != t->x87_exp[1] || t->x87_out[1] != t->x87_exp[0]) {
        snprintf(t->error, sizeof t->error, "thread %d: x87 stack holds %g %g, expected %g %g", t->idx,
                 t->x87_out[0], t->x87_out[1], t->x87_exp[1], t->x87_exp[0]);
        return NULL;
    }
    pid_t tid = (pid_t)syscall(SYS_gettid);
    if (tid != t->tid) {
        snprintf(t->error, sizeof t->error, "thread %d: gettid() is %d, was %d", t->idx, (int)tid,
                 (int)t->tid);
        return NULL;
    }
    if (tls_value != wl_pattern(0x715, (uint64_t)t->idx)) {
        snprintf(t->error, sizeof t->error, "thread %d: TLS value changed (fs_base?)", t->idx);
        return NULL;
    }
    return NULL;
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    enum level level = detect_level();
    static const char *level_names[] = { "sse", "avx", "avx512" };
    fprintf(stderr, "threads_fpu: vector level %s\n", level_names[level]);

    sigset_t term, old;
    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &term, &old); /* threads inherit: only main takes SIGTERM */

    pthread_t th[NTHREADS];
    for (int i = 0; i < NTHREADS; i++) {
        struct tstate *t = &states[i];
        t->idx = i;
        t->level = level;
        t->stop = &stop_flag;
        t->ts.tv_sec = 0;
        t->ts.tv_nsec = 5 * 1000 * 1000;
        wl_fill(t->vexp, sizeof t->vexp, 0x1000 + (uint64_t)i);
        memset(t->vout, 0, sizeof t->vout);
        wl_fill(t->gexp, sizeof t->gexp, 0x2000 + (uint64_t)i);
        for (int k = 0; k < 8; k++)
            t->kexp[k] = (uint16_t)wl_pattern(0x3000 + (uint64_t)i, (uint64_t)k);
        /* Round toward zero, flush-to-zero, denormals-are-zero, a few exceptions unmasked. */
        t->mxcsr_exp = 0xff80u ^ ((uint32_t)i << 7) ^ 0x40;
        t->fcw_exp = (uint16_t)(0x0f7f & ~(1u << i));
        t->x87_exp[0] = 1.5 + i;
        t->x87_exp[1] = -1234.25 * (i + 1);
        WL_CHECK(pthread_create(&th[i], NULL, thread_main, t) == 0, "pthread_create %d", i);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);

    for (int i = 0; i < NTHREADS; i++)
        while (!states[i].started)
            wl_sleep_ms(1);
    char threads[32];
    WL_CHECK(wl_status_field(0, "Threads", threads, sizeof threads) == 0 && atoi(threads) == NTHREADS + 1,
             "expected %d threads at start", NTHREADS + 1);
    wl_ready();
    wl_wait_term();

    WL_CHECK(wl_status_field(0, "Threads", threads, sizeof threads) == 0, "read Threads");
    if (atoi(threads) != NTHREADS + 1)
        wl_fail("/proc/self/status Threads is %s, expected %d", threads, NTHREADS + 1);
    stop_flag = 1;
    for (int i = 0; i < NTHREADS; i++)
        WL_CHECK(pthread_join(th[i], NULL) == 0, "pthread_join %d", i);
    for (int i = 0; i < NTHREADS; i++)
        if (states[i].error[0])
            wl_fail("%s", states[i].error);
    wl_pass();
}
