/* N round trips on a socketpair: send one byte, then receive it with recvmsg (a control
 * buffer given, no fds received: what the capture drops in the kernel) or recvfrom (a syscall
 * the capture does not select). Prints the CPU nanoseconds per round trip (the process's own:
 * a shared machine's other load counts less). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 200000;
    int use_recvmsg = argc <= 2 || strcmp(argv[2], "recvfrom") != 0;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
        return 1;
    char byte = 'x', data[16], control[64];
    struct timespec t0, t1;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t0);
    for (long i = 0; i < n; i++) {
        if (send(sv[0], &byte, 1, 0) != 1)
            return 2;
        if (use_recvmsg) {
            struct iovec iov = {data, sizeof(data)};
            struct msghdr msg = {0};
            msg.msg_iov = &iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control;
            msg.msg_controllen = sizeof(control);
            if (recvmsg(sv[1], &msg, 0) != 1)
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
