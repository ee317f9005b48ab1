/* epoll_eventfd: an epoll instance and eventfds across checkpoint/restore.
 *  e1: eventfd, counter 7, non-blocking.        e2: EFD_SEMAPHORE eventfd, counter 3.
 *  e0: eventfd at 0 (idle).                     p: pipe with 5 unread bytes.
 *  ep: epoll watching e1 (EPOLLIN, data 0x1111), p[0] (EPOLLIN|EPOLLET, 0x2222),
 *      e2 (EPOLLIN|EPOLLONESHOT, 0x3333), e0 (EPOLLIN, 0x4444) and, at a
 *      high descriptor number (dup'ed to 100), the write end of p (EPOLLOUT, 0x5555).
 *  A child shares ep (inherited across fork) and checks the watches are there.
 * After restore: the ready list has exactly the expected entries with their data; the watches
 * are registered under the same descriptor numbers (EPOLL_CTL_ADD -> EEXIST, MOD works); the
 * one-shot watch is disarmed after one report; counters read back 7 and 1,1,1 then EAGAIN. */
#include "wl.h"
#include <sys/epoll.h>
#include <sys/eventfd.h>

static void check_ready(int ep, const char *who)
{
    struct epoll_event ev[16];
    int n = epoll_wait(ep, ev, 16, 0);
    WL_CHECK(n >= 0, "%s: epoll_wait", who);
    uint64_t want[] = { 0x1111, 0x2222, 0x3333, 0x5555 };
    uint32_t want_ev[] = { EPOLLIN, EPOLLIN, EPOLLIN, EPOLLOUT };
    if (n != 4)
        wl_fail("%s: epoll_wait reported %d ready descriptors, expected 4 (first data 0x%llx)", who, n,
                n > 0 ? (unsigned long long)ev[0].data.u64 : 0ULL);
    for (int w = 0; w < 4; w++) {
        int found = 0;
        for (int i = 0; i < n; i++)
            if (ev[i].data.u64 == want[w]) {
                found = 1;
                if (ev[i].events != want_ev[w])
                    wl_fail("%s: data 0x%llx has events 0x%x, expected 0x%x", who, (unsigned long long)want[w],
                            ev[i].events, want_ev[w]);
            }
        if (!found)
            wl_fail("%s: no event with data 0x%llx", who, (unsigned long long)want[w]);
    }
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    int e1 = eventfd(7, EFD_NONBLOCK);
    int e2 = eventfd(3, EFD_SEMAPHORE | EFD_NONBLOCK);
    int e0 = eventfd(0, EFD_CLOEXEC);
    WL_CHECK(e1 >= 0 && e2 >= 0 && e0 >= 0, "eventfd");
    int p[2];
    WL_CHECK(pipe(p) == 0, "pipe");
    WL_CHECK(write(p[1], "hello", 5) == 5, "write pipe");
    WL_CHECK(dup2(p[1], 100) == 100, "dup2");
    int ep = epoll_create1(0);
    WL_CHECK(ep >= 0, "epoll_create1");
    struct epoll_event ev;
    ev = (struct epoll_event){ .events = EPOLLIN, .data.u64 = 0x1111 };
    WL_CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, e1, &ev) == 0, "add e1");
    ev = (struct epoll_event){ .events = EPOLLIN | EPOLLET, .data.u64 = 0x2222 };
    WL_CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev) == 0, "add p");
    ev = (struct epoll_event){ .events = EPOLLIN | EPOLLONESHOT, .data.u64 = 0x3333 };
    WL_CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, e2, &ev) == 0, "add e2");
    ev = (struct epoll_event){ .events = EPOLLIN, .data.u64 = 0x4444 };
    WL_CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, e0, &ev) == 0, "add e0");
    ev = (struct epoll_event){ .events = EPOLLOUT, .data.u64 = 0x5555 };
    WL_CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, 100, &ev) == 0, "add 100");

    pid_t child = fork();
    WL_CHECK(child >= 0, "fork");
    if (child == 0) {
        wl_is_child = 1;
        wl_wait_term();
        /* Same instance as the parent's, with its watches (the parent checks the ready list). */
        struct epoll_event again = { .events = EPOLLIN, .data.u64 = 0x4444 };
        if (epoll_ctl(ep, EPOLL_CTL_ADD, e0, &again) != -1 || errno != EEXIST)
            wl_fail("child: EPOLL_CTL_ADD of e0 did not fail with EEXIST: epoll not shared or watch lost");
        wl_pass();
    }

    wl_ready();
    wl_wait_term();

    check_ready(ep, "parent");
    /* One-shot: disarmed now. Edge-triggered pipe: no new data, not reported again. */
    struct epoll_event out[16];
    int n = epoll_wait(ep, out, 16, 0);
    for (int i = 0; i < n; i++)
        if (out[i].data.u64 == 0x3333 || out[i].data.u64 == 0x2222)
            wl_fail("data 0x%llx reported twice", (unsigned long long)out[i].data.u64);
    /* Registered under the same numbers. */
    ev = (struct epoll_event){ .events = EPOLLIN, .data.u64 = 0x4444 };
    if (epoll_ctl(ep, EPOLL_CTL_ADD, e0, &ev) != -1 || errno != EEXIST)
        wl_fail("EPOLL_CTL_ADD of e0 (fd %d) did not fail with EEXIST: watch not under the same number", e0);
    WL_CHECK(epoll_ctl(ep, EPOLL_CTL_MOD, 100, &ev) == 0, "EPOLL_CTL_MOD fd 100");
    WL_CHECK(epoll_ctl(ep, EPOLL_CTL_DEL, 100, NULL) == 0, "EPOLL_CTL_DEL fd 100");
    /* Counters. */
    uint64_t v = 0;
    WL_CHECK(read(e1, &v, 8) == 8, "read e1");
    if (v != 7)
        wl_fail("e1 counter %llu, expected 7", (unsigned long long)v);
    for (int i = 0; i < 3; i++) {
        WL_CHECK(read(e2, &v, 8) == 8, "read e2 #%d", i);
        if (v != 1)
            wl_fail("semaphore e2 read %llu, expected 1", (unsigned long long)v);
    }
    if (read(e2, &v, 8) != -1 || errno != EAGAIN)
        wl_fail("semaphore e2 not empty after 3 reads (or lost O_NONBLOCK)");
    if (!(fcntl(e1, F_GETFL) & O_NONBLOCK) || (fcntl(e0, F_GETFL) & O_NONBLOCK))
        wl_fail("eventfd O_NONBLOCK flags changed");
    if (fcntl(e0, F_GETFD) != FD_CLOEXEC)
        wl_fail("e0 lost close-on-exec");
    /* e0 works: it becomes ready when written. */
    v = 5;
    WL_CHECK(write(e0, &v, 8) == 8, "write e0");
    n = epoll_wait(ep, out, 16, 0);
    int saw = 0;
    for (int i = 0; i < n; i++)
        saw |= out[i].data.u64 == 0x4444;
    if (!saw)
        wl_fail("e0 written but not reported by epoll");
    char buf[8];
    WL_CHECK(read(p[0], buf, 5) == 5 && memcmp(buf, "hello", 5) == 0, "pipe data");
    v = 0;
    WL_CHECK(read(e0, &v, 8) == 8 && v == 5, "read e0");
    WL_CHECK(kill(child, SIGTERM) == 0, "signal child");
    wl_expect_child_pass(child, "epoll child");
    wl_pass();
}
