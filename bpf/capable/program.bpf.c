/* capable: capability checks, like bcc's capable, from capability:cap_capable.
 *
 * The tracepoint fires in cap_capable() in the context of the task being checked, with the
 * capability and the verdict (0 or -EPERM). Its cred and namespace pointers are never read.
 */
#include "eunomia.h"

#ifndef FILTER_CAP
#define FILTER_CAP -1
#endif
#ifndef FILTER_DENIED
#define FILTER_DENIED 0
#endif

struct event {
    struct eunomia_header hdr;
    s32 cap;
    u8 cap_name;
    u8 result;
};

struct check_key {
    u64 cgroup_id;  /* the checked task's */
    u32 cap;
    u32 result;
};
BPF_HASH(capable_checks_total, struct check_key, u64, 10240);

static __always_inline void count_check(struct check_key *key)
{
    u64 zero = 0;
    u64 *count = capable_checks_total.lookup_or_try_init(key, &zero);
    if (count)
        __sync_fetch_and_add(count, 1);
    else
        eunomia_count_drop();  /* the map is full */
}

TRACEPOINT_PROBE(capability, cap_capable)
{
    int cap = args->cap;
    if (FILTER_CAP >= 0 && cap != FILTER_CAP)
        return 0;
    if (eunomia_skip_current())
        return 0;
    u8 denied = args->ret != 0;
    struct check_key key = {.cgroup_id = eunomia_current_cgroup_id(), .cap = (u32)cap, .result = denied};
    count_check(&key);
    if (FILTER_DENIED && !denied)
        return 0;
    struct event *e = eunomia_reserve_event(sizeof(struct event));
    if (!e)
        return 0;
    e->cap = cap;
    e->cap_name = (u8)cap;
    e->result = denied;
    eunomia_submit(e, sizeof(*e));
    return 0;
}
