/* Test tracer: compiles, but the verifier rejects it (a map value used without a NULL check). */
#include "eunomia.h"

struct event {
    struct eunomia_header hdr;
};

BPF_HASH(values, u32, u64, 16);

TRACEPOINT_PROBE(sched, sched_process_exec)
{
    u32 key = 0;
    u64 *value = values.lookup(&key);
    return *value;
}
