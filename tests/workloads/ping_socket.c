/* ping_socket: holds an ICMP datagram ("ping") socket, socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP).
 * The kernel creates one only for a caller whose group is inside net.ipv4.ping_group_range, a
 * sysctl of the running system whose default ("1 0") admits nobody: a restorer on a kernel where it
 * was not set cannot recreate the socket, and the tree holding it is not restored. When restored,
 * on SIGTERM it checks the descriptor is still an ICMP datagram socket and that an echo request to
 * 127.0.0.1 gets its reply through it. */
#include "wl.h"
#include <netinet/in.h>
#include <netinet/ip_icmp.h>
#include <poll.h>
#include <sys/socket.h>

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, IPPROTO_ICMP);
    WL_CHECK(s >= 0, "socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP) (is net.ipv4.ping_group_range set?)");
    wl_ready();
    wl_wait_term();

    int type = 0, proto = 0;
    socklen_t len = sizeof type;
    WL_CHECK(getsockopt(s, SOL_SOCKET, SO_TYPE, &type, &len) == 0 && type == SOCK_DGRAM, "SO_TYPE %d", type);
    len = sizeof proto;
    WL_CHECK(getsockopt(s, SOL_SOCKET, SO_PROTOCOL, &proto, &len) == 0 && proto == IPPROTO_ICMP,
             "SO_PROTOCOL %d, expected ICMP", proto);
    struct icmphdr req = { .type = ICMP_ECHO, .un.echo.sequence = htons(7) };
    struct sockaddr_in to = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    WL_CHECK(sendto(s, &req, sizeof req, 0, (struct sockaddr *)&to, sizeof to) == sizeof req, "send echo request");
    struct pollfd p = { .fd = s, .events = POLLIN };
    WL_CHECK(poll(&p, 1, 5000) == 1, "no echo reply within 5 s");
    struct icmphdr rep;
    WL_CHECK(recv(s, &rep, sizeof rep, 0) >= (ssize_t)sizeof rep, "recv echo reply");
    WL_CHECK(rep.type == ICMP_ECHOREPLY && ntohs(rep.un.echo.sequence) == 7, "reply type %d seq %d", rep.type,
             ntohs(rep.un.echo.sequence));
    wl_pass();
}
