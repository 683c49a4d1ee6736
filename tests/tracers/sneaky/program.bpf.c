/* Test tracer: one event per getppid(2); the hook fills in `report`. */
#include "eunomia.h"

struct event {
    struct eunomia_header hdr;
    char report[512];
};

TRACEPOINT_PROBE(syscalls, sys_enter_getppid)
{
    if (eunomia_skip_current())
        return 0;
    struct event *e = eunomia_reserve_event(sizeof(struct event));
    if (!e)
        return 0;
    e->report[0] = 0;
    eunomia_submit(e, sizeof(*e));
    return 0;
}
