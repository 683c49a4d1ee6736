/* Test tracer: one event per getppid(2), every loss counted (ring buffer full → eunomia_drops). */
#include "eunomia.h"

struct event {
    struct eunomia_header hdr;
};

TRACEPOINT_PROBE(syscalls, sys_enter_getppid)
{
    if (eunomia_skip_current())
        return 0;
    struct event *e = eunomia_reserve_event(sizeof(struct event));
    if (!e)
        return 0;
    eunomia_submit(e, sizeof(*e));
    return 0;
}
