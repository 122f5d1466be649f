/* N round trips on a socketpair: send one byte, then receive it with recvmsg (a control
 * buffer given, no fds received: what the capture drops in the kernel), recvmmsg (the same, one
 * message per call: dropped in the kernel too) or recvfrom (a syscall the capture does not
 * select). Prints the CPU nanoseconds per round trip (the process's own: a shared machine's
 * other load counts less). */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 200000;
    const char *mode = argc > 2 ? argv[2] : "recvmsg";
    int use_recvmsg = strcmp(mode, "recvmsg") == 0, use_recvmmsg = strcmp(mode, "recvmmsg") == 0;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
        return 1;
    char byte = 'x', data[16], control[64];
    struct timespec t0, t1;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t0);
    for (long i = 0; i < n; i++) {
        if (send(sv[0], &byte, 1, 0) != 1)
            return 2;
        if (use_recvmsg || use_recvmmsg) {
            struct iovec iov = {data, sizeof(data)};
            struct mmsghdr mm = {0};
            mm.msg_hdr.msg_iov = &iov;
            mm.msg_hdr.msg_iovlen = 1;
            mm.msg_hdr.msg_control = control;
            mm.msg_hdr.msg_controllen = sizeof(control);
            if (use_recvmsg ? recvmsg(sv[1], &mm.msg_hdr, 0) != 1
                            : recvmmsg(sv[1], &mm, 1, 0, NULL) != 1)
                return 3;
        } else if (recvfrom(sv[1], data, sizeof(data), 0, NULL, NULL) != 1) {
            return 3;
        }
    }
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t1);
    double ns = (t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec);
    printf("%.1f\n", ns / n);
    return 0;
}
