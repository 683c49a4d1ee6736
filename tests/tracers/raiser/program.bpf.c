/* Test tracer: one event per getppid(2) of the traced processes; its hook misbehaves. */
#include "eunomia.h"

struct event {
    struct eunomia_header hdr;
};

TRACEPOINT_PROBE(syscalls, sys_enter_getppid)
{
    if (eunomia_skip_current())
        return 0;
    struct event *e = events.ringbuf_reserve(sizeof(struct event));
    if (!e) {
        eunomia_count_drop();
        return 0;
    }
    eunomia_fill_header(&e->hdr);
    eunomia_submit(e, sizeof(*e));
    return 0;
}
