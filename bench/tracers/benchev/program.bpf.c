/* benchev: one event per getppid(2) of the traced process (pass `pid`), for bench/run.py.
 *
 * As small as an event can be: the common header plus a sequence number. The number
 * counts the calls this probe accepted (after the pid filter), so the newest stored
 * event tells how many calls the kernel saw. Not atomic on purpose: the benchmark's
 * producer is single-threaded, so two runs of this probe never race on it.
 */
#include "eunomia.h"

struct event {
    struct eunomia_header hdr;
    u64 seq;
};

BPF_ARRAY(benchev_seq, u64, 1);

TRACEPOINT_PROBE(syscalls, sys_enter_getppid)
{
    if (eunomia_skip_current())
        return 0;
    int zero = 0;
    u64 *seq = benchev_seq.lookup(&zero);
    if (!seq)
        return 0;
    u64 n = *seq + 1;
    *seq = n;
    struct event *e = eunomia_reserve_event(sizeof(struct event));
    if (!e)
        return 0;
    e->seq = n;
    eunomia_submit(e, sizeof(*e));
    return 0;
}
