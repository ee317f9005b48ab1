/* sysctl_ping: depends on a sysctl set at run time. It widens net.ipv4.ping_group_range to every
 * group (the kernel's default "1 0" allows nobody), opens an ICMP datagram ("ping") socket, which
 * the kernel only allows inside that range, and sends an echo request to 127.0.0.1 and reads the
 * reply. After SIGTERM the same socket must still ping, and the range must still be what the
 * workload set (a new kernel starts with its default). On exit the range is put back as found. */
#include "wl.h"
#include <netinet/in.h>
#include <netinet/ip_icmp.h>
#include <sys/socket.h>

#define RANGE "/proc/sys/net/ipv4/ping_group_range"
#define WIDE "0\t2147483647"

static char original[64];

static void read_range(char *buf, size_t size)
{
    buf[0] = 0;
    FILE *f = fopen(RANGE, "r");
    if (!f)
        return;
    if (!fgets(buf, (int)size, f))
        buf[0] = 0;
    fclose(f);
    buf[strcspn(buf, "\n")] = 0;
}

static void put_back(void)
{
    if (original[0])
        wl_write_file(RANGE, original);
}

static int ping(int s, uint16_t seq)
{
    struct icmphdr req = { .type = ICMP_ECHO, .un.echo.sequence = htons(seq) };
    struct sockaddr_in to = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    if (sendto(s, &req, sizeof req, 0, (struct sockaddr *)&to, sizeof to) != sizeof req)
        return -1;
    for (int tries = 0; tries < 100; tries++) {
        struct icmphdr rep;
        ssize_t n = recv(s, &rep, sizeof rep, MSG_DONTWAIT);
        if (n == (ssize_t)sizeof rep && rep.type == ICMP_ECHOREPLY && ntohs(rep.un.echo.sequence) == seq)
            return 0;
        if (n < 0 && errno != EAGAIN && errno != EINTR)
            return -1;
        wl_sleep_ms(20);
    }
    errno = ETIMEDOUT;
    return -1;
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    read_range(original, sizeof original);
    WL_CHECK(original[0], "reading %s", RANGE);
    atexit(put_back);
    WL_CHECK(wl_write_file(RANGE, WIDE "\n") == 0, "writing %s", RANGE);
    int s = socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP);
    WL_CHECK(s >= 0, "ICMP datagram socket with ping_group_range '%s'", WIDE);
    WL_CHECK(ping(s, 1) == 0, "ping 127.0.0.1 before the checkpoint");
    wl_ready();
    wl_wait_term();
    char now[64];
    read_range(now, sizeof now);
    int ok_range = strcmp(now, WIDE) == 0;
    int ok_ping = ping(s, 2) == 0;
    int err = errno;
    put_back();
    if (!ok_range)
        wl_fail("net.ipv4.ping_group_range is '%s' after the checkpoint, set to '%s' before", now, WIDE);
    if (!ok_ping)
        wl_fail("the ICMP datagram socket no longer pings 127.0.0.1: %s", strerror(err));
    wl_pass();
}
