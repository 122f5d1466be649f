/* A syscall load for the capture benchmarks, in C: the rates a Python loop cannot make.
 *
 * Modes (each call is one syscall the default preset records):
 *   close  close(-1), which fails at once with EBADF: the cheapest recorded syscall, so the
 *          capture's own cost, not the load's, bounds the rate;
 *   open   open and close /etc/hostname (the Python load's pattern, bench/capture/load.py).
 * Either paced to RATE syscalls/s for SECONDS (RATE 0: as fast as possible) or a fixed amount
 * of work as fast as possible (--syscalls N). With --wait first, it starts only when a line
 * arrives on stdin (so a capture can be started on its pid). Prints one JSON line on stdout:
 * {"syscalls": N, "seconds": T}, as load.py does.
 *
 * Usage: load MODE [--wait] RATE SECONDS | load MODE [--wait] --syscalls N
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CHUNK 500 /* calls between clock reads: pacing costs little and stays within ~1 ms */

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

/* CHUNK syscalls of the mode. */
static void chunk(int open_mode)
{
    if (open_mode) {
        for (int i = 0; i < CHUNK / 2; i++)
            close(open("/etc/hostname", O_RDONLY));
    } else {
        for (int i = 0; i < CHUNK; i++)
            close(-1);
    }
}

int main(int argc, char **argv)
{
    if (argc < 2 || (strcmp(argv[1], "close") && strcmp(argv[1], "open"))) {
        fprintf(stderr, "usage: %s close|open [--wait] RATE SECONDS | --syscalls N\n", argv[0]);
        return 2;
    }
    int open_mode = !strcmp(argv[1], "open");
    int a = 2;
    if (a < argc && !strcmp(argv[a], "--wait")) {
        char line[64];
        if (!fgets(line, sizeof line, stdin))
            return 1;
        a++;
    }
    if (argc - a != 2) {
        fprintf(stderr, "usage: %s close|open [--wait] RATE SECONDS | --syscalls N\n", argv[0]);
        return 2;
    }
    double start = now(), elapsed;
    long made = 0;
    if (!strcmp(argv[a], "--syscalls")) {
        long n = atol(argv[a + 1]);
        while (made < n) {
            chunk(open_mode);
            made += CHUNK;
        }
    } else {
        double rate = atof(argv[a]), end = start + atof(argv[a + 1]);
        while (now() < end) {
            chunk(open_mode);
            made += CHUNK;
            if (rate > 0) {
                double ahead = made / rate - (now() - start);
                if (ahead > 0) {
                    struct timespec t = {(time_t)ahead, (long)((ahead - (time_t)ahead) * 1e9)};
                    nanosleep(&t, NULL);
                }
            }
        }
    }
    elapsed = now() - start;
    printf("{\"syscalls\": %ld, \"seconds\": %.6f}\n", made, elapsed);
    return 0;
}
