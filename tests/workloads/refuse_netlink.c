/* refuse_netlink: holds a bound NETLINK_ROUTE socket, which the dumper does not support. It must
 * refuse up front, naming the socket, and leave the process running: the workload keeps a heartbeat
 * counter (8 bytes at offset 0 of OUTFILE.progress, rewritten every 10 ms) that the runner watches.
 * After SIGTERM it checks the socket still answers an RTM_GETLINK dump request. */
#include "wl.h"
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    int nl = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    WL_CHECK(nl >= 0, "netlink socket");
    struct sockaddr_nl sa = { .nl_family = AF_NETLINK };
    WL_CHECK(bind(nl, (struct sockaddr *)&sa, sizeof sa) == 0, "bind netlink");
    char path[4096];
    wl_path(path, sizeof path, ".progress");
    int prog = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    WL_CHECK(prog >= 0, "open %s", path);
    uint64_t beat = 0;
    WL_CHECK(pwrite(prog, &beat, sizeof beat, 0) == sizeof beat, "heartbeat");
    wl_ready();
    while (!wl_term) {
        beat++;
        WL_CHECK(pwrite(prog, &beat, sizeof beat, 0) == sizeof beat, "heartbeat");
        wl_sleep_ms(10);
    }

    struct {
        struct nlmsghdr h;
        struct ifinfomsg i;
    } req = { .h = { .nlmsg_len = sizeof req, .nlmsg_type = RTM_GETLINK, .nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP,
                     .nlmsg_seq = 42 },
              .i = { .ifi_family = AF_UNSPEC } };
    WL_CHECK(send(nl, &req, sizeof req, 0) == sizeof req, "send RTM_GETLINK");
    char buf[65536];
    ssize_t n = recv(nl, buf, sizeof buf, 0);
    WL_CHECK(n > 0, "recv netlink reply");
    struct nlmsghdr *h = (struct nlmsghdr *)buf;
    if (!NLMSG_OK(h, (unsigned)n) || h->nlmsg_seq != 42 || (h->nlmsg_type != RTM_NEWLINK && h->nlmsg_type != NLMSG_DONE))
        wl_fail("unexpected netlink reply type %d seq %u", h->nlmsg_type, h->nlmsg_seq);
    wl_pass();
}
