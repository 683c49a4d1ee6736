/* Test tracer: one event per getppid(2) of the traced processes; its hook misbehaves. */
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
