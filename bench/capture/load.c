/* The syscall load of load.py in C, for rates a Python loop cannot make (bench_capture.py
 * --c-load compiles it with `gcc -O2`): open and close /etc/hostname in a loop, paced to RATE
 * syscalls/s (0: as fast as possible) for SECONDS. With --bad-close, each iteration is one
 * close(-1) instead: a failing syscall the capture records like any close, which costs the kernel
 * so little that the capture's own rate limits the step. With --wait, it starts only when a line
 * arrives on stdin. Prints one JSON line: {"syscalls": N, "seconds": T}.
 *
 * Usage: load [--bad-close] [--wait] RATE SECONDS
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CHUNK 500 /* iterations between clock reads, as in load.py */

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    int arg = 1, bad_close = 0;
    if (argc > arg && strcmp(argv[arg], "--bad-close") == 0) {
        bad_close = 1;
        arg++;
    }
    if (argc > arg && strcmp(argv[arg], "--wait") == 0) {
        char line[64];
        if (!fgets(line, sizeof line, stdin))
            return 1;
        arg++;
    }
    if (argc - arg != 2) {
        fprintf(stderr, "usage: load [--bad-close] [--wait] RATE SECONDS\n");
        return 2;
    }
    double rate = atof(argv[arg]), seconds = atof(argv[arg + 1]);
    double start = now(), end = start + seconds;
    long syscalls = 0;
    while (now() < end) {
        for (int i = 0; i < CHUNK; i++) {
            if (bad_close)
                close(-1);
            else
                close(open("/etc/hostname", O_RDONLY));
        }
        syscalls += bad_close ? CHUNK : 2 * CHUNK;
        if (rate > 0) {
            double ahead = syscalls / rate - (now() - start);
            if (ahead > 0)
                usleep((useconds_t)(ahead * 1e6));
        }
    }
    printf("{\"syscalls\": %ld, \"seconds\": %f}\n", syscalls, now() - start);
    return 0;
}
