/* Test tracer: one event per exec; its hook crashes the worker on the first event. */
#include "eunomia.h"

struct event {
    struct eunomia_header hdr;
};

TRACEPOINT_PROBE(sched, sched_process_exec)
{
    if (eunomia_skip_current())
        return 0;
    struct event *e = eunomia_reserve_event(sizeof(struct event));
    if (!e)
        return 0;
    eunomia_submit(e, sizeof(*e));
    return 0;
}
