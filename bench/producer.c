/* Benchmark load: getppid(2) at a fixed rate for a fixed time (bench/run.py compiles it).
 *
 *   producer RATE SECONDS TICK_US
 *
 * Prints "ready <pid>" and waits for a line on stdin, so that the tracer can be started
 * with a filter on this pid first. Then, every TICK_US (absolute clock, no drift), it
 * issues the calls that are due since the start (rate * elapsed), and at the end the
 * rest up to RATE * SECONDS. If the process cannot keep up, it falls behind and the
 * achieved rate (calls / seconds) shows it. Prints one JSON line with its own counts.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double tv(struct timeval t)
{
    return t.tv_sec + t.tv_usec * 1e-6;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s RATE SECONDS TICK_US\n", argv[0]);
        return 2;
    }
    double rate = atof(argv[1]), seconds = atof(argv[2]);
    long tick_ns = atol(argv[3]) * 1000L;
    if (rate <= 0 || seconds <= 0 || tick_ns <= 0) {
        fprintf(stderr, "RATE, SECONDS and TICK_US must be positive\n");
        return 2;
    }
    unsigned long long target = (unsigned long long)(rate * seconds), done = 0;
    printf("ready %d\n", (int)getpid());
    fflush(stdout);
    char line[64];
    if (!fgets(line, sizeof line, stdin))
        return 1;

    struct rusage ru0, ru1;
    getrusage(RUSAGE_SELF, &ru0);
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    double t0 = now(), el, max_lag = 0;
    for (;;) {
        el = now() - t0;
        unsigned long long due = el >= seconds ? target : (unsigned long long)(rate * el);
        if (due > target)
            due = target;
        if (due > done && (double)(due - done) / rate > max_lag)
            max_lag = (double)(due - done) / rate;
        while (done < due) {
            syscall(SYS_getppid);
            done++;
        }
        if (done >= target)
            break;
        next.tv_nsec += tick_ns;
        while (next.tv_nsec >= 1000000000L) {
            next.tv_nsec -= 1000000000L;
            next.tv_sec++;
        }
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL);
    }
    el = now() - t0;
    getrusage(RUSAGE_SELF, &ru1);
    printf("{\"calls\": %llu, \"seconds\": %.6f, \"max_lag_s\": %.6f, \"user_s\": %.6f, \"sys_s\": %.6f}\n",
           done, el, max_lag, tv(ru1.ru_utime) - tv(ru0.ru_utime), tv(ru1.ru_stime) - tv(ru0.ru_stime));
    fflush(stdout);
    return 0;
}
