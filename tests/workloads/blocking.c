/* blocking MODE: a child blocked in one system call while being checkpointed. MODE is one of
 * nanosleep, read, futex, poll, epoll, accept. The root waits until /proc shows the child (or its
 * thread) sleeping inside that very call before announcing READY. After SIGTERM the root wakes the
 * child the normal way (data on a pipe, a futex wake, a TCP connection; the 6 s nanosleep just
 * ends) and the child checks that the call completed with the right result: restarted
 * transparently, or EINTR (tolerated and retried, counted on stderr), never a bogus value. */
#include "wl.h"
#include <arpa/inet.h>
#include <dirent.h>
#include <linux/futex.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/socket.h>

static int eintr_count;

static void note_eintr(const char *call)
{
    eintr_count++;
    fprintf(stderr, "blocking: %s returned EINTR (%d), retrying\n", call, eintr_count);
}

static const char wake_msg[] = "wake-up-data";

/* ---- nanosleep ---- */
static void child_nanosleep(void)
{
    double t0 = wl_now(CLOCK_MONOTONIC);
    struct timespec req = { 6, 0 }, rem;
    while (nanosleep(&req, &rem) == -1) {
        WL_CHECK(errno == EINTR, "nanosleep");
        if (rem.tv_sec > 6 || rem.tv_sec < 0 || rem.tv_nsec < 0 || rem.tv_nsec >= 1000000000L)
            wl_fail("nanosleep returned EINTR with a bogus remaining time %ld.%09ld", (long)rem.tv_sec, rem.tv_nsec);
        note_eintr("nanosleep");
        req = rem;
    }
    double slept = wl_now(CLOCK_MONOTONIC) - t0;
    if (slept < 6 - 0.01)
        wl_fail("nanosleep(6 s) returned success after only %.3f s", slept);
    wl_wait_term();
    wl_pass();
}

/* ---- read ---- */
static void child_read(int fd)
{
    char buf[64];
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) == -1 && errno == EINTR)
        note_eintr("read");
    if (n != (ssize_t)strlen(wake_msg) || memcmp(buf, wake_msg, (size_t)n) != 0)
        wl_fail("blocked read returned %zd (%s), expected the %zu bytes written after restore", n,
                n < 0 ? strerror(errno) : "unexpected data", strlen(wake_msg));
    wl_wait_term();
    wl_pass();
}

/* ---- futex ---- */
static volatile int futex_word;
static volatile int futex_waiter_done;
static char futex_error[256];

static void *futex_waiter(void *arg)
{
    (void)arg;
    while (futex_word == 0) {
        long r = syscall(SYS_futex, &futex_word, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
        if (r == -1 && errno == EINTR)
            note_eintr("futex");
        else if (r == -1 && errno != EAGAIN)
            snprintf(futex_error, sizeof futex_error, "futex wait failed: %s", strerror(errno));
        else if (r != 0 && r != -1)
            snprintf(futex_error, sizeof futex_error, "futex wait returned %ld", r);
        if (futex_error[0])
            break;
    }
    futex_waiter_done = 1;
    return NULL;
}

static void child_futex(void)
{
    pthread_t th;
    sigset_t term, old;
    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &term, &old);
    WL_CHECK(pthread_create(&th, NULL, futex_waiter, NULL) == 0, "pthread_create");
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    wl_wait_term();
    if (futex_waiter_done)
        wl_fail("futex waiter returned before the wake: %s", futex_error[0] ? futex_error : "word still 0?");
    futex_word = 1;
    syscall(SYS_futex, &futex_word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
    for (int i = 0; i < 500 && !futex_waiter_done; i++)
        wl_sleep_ms(10);
    if (!futex_waiter_done)
        wl_fail("futex waiter thread did not wake up within 5 s of FUTEX_WAKE");
    pthread_join(th, NULL);
    if (futex_error[0])
        wl_fail("%s", futex_error);
    wl_pass();
}

/* ---- poll ---- */
static void child_poll(int fd, int idle_fd)
{
    struct pollfd p[2] = { { .fd = idle_fd, .events = POLLIN }, { .fd = fd, .events = POLLIN } };
    int n;
    while ((n = poll(p, 2, -1)) == -1 && errno == EINTR)
        note_eintr("poll");
    if (n != 1 || p[1].revents != POLLIN || p[0].revents != 0)
        wl_fail("poll returned %d (%s), revents idle=0x%x data=0x%x, expected 1 and 0x0/0x%x", n,
                n < 0 ? strerror(errno) : "-", p[0].revents, p[1].revents, POLLIN);
    child_read(fd);
}

/* ---- epoll ---- */
static void child_epoll(int fd, int idle_fd)
{
    int ep = epoll_create1(EPOLL_CLOEXEC);
    WL_CHECK(ep >= 0, "epoll_create1");
    struct epoll_event ev = { .events = EPOLLIN, .data.u64 = 0xFEEDFACE12345678ull };
    WL_CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) == 0, "epoll_ctl");
    struct epoll_event idle = { .events = EPOLLIN, .data.u64 = 0x1D1E };
    WL_CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, idle_fd, &idle) == 0, "epoll_ctl idle");
    struct epoll_event out[4];
    int n;
    while ((n = epoll_wait(ep, out, 4, -1)) == -1 && errno == EINTR)
        note_eintr("epoll_wait");
    if (n != 1 || out[0].events != EPOLLIN || out[0].data.u64 != 0xFEEDFACE12345678ull)
        wl_fail("epoll_wait returned %d (%s), first event 0x%x data 0x%llx, expected 1 EPOLLIN 0xfeedface12345678",
                n, n < 0 ? strerror(errno) : "-", n > 0 ? out[0].events : 0,
                n > 0 ? (unsigned long long)out[0].data.u64 : 0ull);
    child_read(fd);
}

/* ---- accept ---- */
static void child_accept(int ls)
{
    int c;
    while ((c = accept(ls, NULL, NULL)) == -1 && errno == EINTR)
        note_eintr("accept");
    WL_CHECK(c >= 0, "accept");
    char buf[64];
    ssize_t n = read(c, buf, sizeof buf);
    if (n != (ssize_t)strlen(wake_msg) || memcmp(buf, wake_msg, (size_t)n) != 0)
        wl_fail("accepted connection delivered %zd bytes, expected '%s'", n, wake_msg);
    WL_CHECK(write(c, "ok", 2) == 2, "reply");
    close(c);
    wl_wait_term();
    wl_pass();
}

/* Is any thread of pid sleeping in one of the given system calls? */
static int in_syscall(pid_t pid, const int *nrs)
{
    char dir[64];
    snprintf(dir, sizeof dir, "/proc/%d/task", (int)pid);
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    struct dirent *e;
    int found = 0;
    while (!found && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char path[128], buf[256];
        snprintf(path, sizeof path, "%s/%s/syscall", dir, e->d_name);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            continue;
        ssize_t n = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (n <= 0)
            continue;
        buf[n] = 0;
        int nr = atoi(buf);
        for (const int *p = nrs; *p >= 0; p++)
            found |= buf[0] >= '0' && buf[0] <= '9' && nr == *p;
    }
    closedir(d);
    return found;
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    if (argc < 3)
        wl_fail("usage: blocking OUTFILE nanosleep|read|futex|poll|epoll|accept");
    const char *mode = argv[2];
    int data[2], idle[2];
    WL_CHECK(pipe(data) == 0 && pipe(idle) == 0, "pipe");
    int ls = -1, port = 0;
    static const int nr_nanosleep[] = { SYS_nanosleep, SYS_clock_nanosleep, -1 };
    static const int nr_read[] = { SYS_read, -1 };
    static const int nr_futex[] = { SYS_futex, -1 };
    static const int nr_poll[] = { SYS_poll, SYS_ppoll, -1 };
    static const int nr_epoll[] = { SYS_epoll_wait, SYS_epoll_pwait, SYS_epoll_pwait2, -1 };
    static const int nr_accept[] = { SYS_accept, SYS_accept4, -1 };
    const int *nrs;
    if (!strcmp(mode, "nanosleep"))
        nrs = nr_nanosleep;
    else if (!strcmp(mode, "read"))
        nrs = nr_read;
    else if (!strcmp(mode, "futex"))
        nrs = nr_futex;
    else if (!strcmp(mode, "poll"))
        nrs = nr_poll;
    else if (!strcmp(mode, "epoll"))
        nrs = nr_epoll;
    else if (!strcmp(mode, "accept")) {
        nrs = nr_accept;
        ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        WL_CHECK(ls >= 0, "socket");
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t alen = sizeof a;
        WL_CHECK(bind(ls, (struct sockaddr *)&a, sizeof a) == 0 && listen(ls, 4) == 0, "bind/listen");
        WL_CHECK(getsockname(ls, (struct sockaddr *)&a, &alen) == 0, "getsockname");
        port = ntohs(a.sin_port);
    } else
        wl_fail("unknown mode '%s'", mode);

    pid_t child = fork();
    WL_CHECK(child >= 0, "fork");
    if (child == 0) {
        wl_is_child = 1;
        close(data[1]);
        close(idle[1]);
        if (!strcmp(mode, "nanosleep"))
            child_nanosleep();
        else if (!strcmp(mode, "read"))
            child_read(data[0]);
        else if (!strcmp(mode, "futex"))
            child_futex();
        else if (!strcmp(mode, "poll"))
            child_poll(data[0], idle[0]);
        else if (!strcmp(mode, "epoll"))
            child_epoll(data[0], idle[0]);
        else
            child_accept(ls);
        _exit(1);
    }
    close(data[0]);
    close(idle[0]);
    if (ls >= 0)
        close(ls);
    for (int i = 0; !in_syscall(child, nrs); i++) {
        WL_CHECK(i < 1000, "child %d never blocked in %s", (int)child, mode);
        wl_sleep_ms(5);
    }
    wl_ready();
    wl_wait_term();

    if (!strcmp(mode, "read") || !strcmp(mode, "poll") || !strcmp(mode, "epoll")) {
        WL_CHECK(write(data[1], wake_msg, strlen(wake_msg)) == (ssize_t)strlen(wake_msg), "wake the child");
    } else if (!strcmp(mode, "accept")) {
        int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                                 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        WL_CHECK(connect(c, (struct sockaddr *)&a, sizeof a) == 0, "connect to the restored listener on port %d",
                 port);
        WL_CHECK(write(c, wake_msg, strlen(wake_msg)) == (ssize_t)strlen(wake_msg), "send");
        char buf[8];
        ssize_t n = read(c, buf, sizeof buf);
        if (n != 2 || memcmp(buf, "ok", 2) != 0)
            wl_fail("no reply from the accepting child (read returned %zd)", n);
        close(c);
    }
    WL_CHECK(kill(child, SIGTERM) == 0, "signal child");
    wl_expect_child_pass(child, mode);
    wl_pass();
}
