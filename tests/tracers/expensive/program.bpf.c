/* Test tracer: LOOPS iterations of map work per getppid(2): costly kernel time on purpose.
 * It never emits an event; its cost is all it is for. */
#include "eunomia.h"

struct event {
    struct eunomia_header hdr;
};

BPF_ARRAY(scratch, u64, 1);

TRACEPOINT_PROBE(syscalls, sys_enter_getppid)
{
    if (eunomia_skip_current())
        return 0;
    int zero = 0;
    u64 *value = scratch.lookup(&zero);
    if (!value)
        return 0;
    for (int i = 0; i < LOOPS; i++)
        *value = *value * 6364136223846793005ULL + i;
    return 0;
}
