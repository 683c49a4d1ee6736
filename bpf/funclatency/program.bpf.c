/* funclatency: how long a user-space function takes, from a uprobe at its entry and a
 * uretprobe at its return, as a log2 histogram in the kernel (and optional per-call events).
 * Nested or recursive calls on one thread count the outermost call only.
 */
#include "eunomia.h"

#ifndef EMIT_EVENTS
#define EMIT_EVENTS 0
#endif

struct event {
    struct eunomia_header hdr;
    u64 latency_ns;
};

struct hist_key {
    u64 cgroup_id;  /* the calling task's */
    u32 slot;       /* log2 of the latency in ns */
    u32 pad;        /* the map key is all 16 bytes: set to 0 */
};

BPF_HASH(entered, u32, u64, 10240);                                  /* tid → entry time */
BPF_HASH(funclatency_latency_seconds, struct hist_key, u64, 4096);   /* → calls */

int on_entry(struct pt_regs *ctx)
{
    if (eunomia_skip_current())
        return 0;
    u32 tid = (u32)bpf_get_current_pid_tgid();
    u64 now = bpf_ktime_get_ns();
    if (entered.insert(&tid, &now) != 0 && !entered.lookup(&tid))
        eunomia_count_drop();  /* map full (an existing entry means a nested call: keep the outer one) */
    return 0;
}

int on_return(struct pt_regs *ctx)
{
    u32 tid = (u32)bpf_get_current_pid_tgid();
    u64 *start = entered.lookup(&tid);
    if (!start)
        return 0;
    u64 latency = bpf_ktime_get_ns() - *start;
    entered.delete(&tid);
    struct hist_key key = {.cgroup_id = eunomia_current_cgroup_id(), .slot = bpf_log2l(latency), .pad = 0};
    u64 zero = 0;
    u64 *count = funclatency_latency_seconds.lookup_or_try_init(&key, &zero);
    if (count)
        __sync_fetch_and_add(count, 1);
    else
        eunomia_count_drop();  /* the map is full */
    if (!EMIT_EVENTS)
        return 0;
    struct event *e = eunomia_reserve_event(sizeof(struct event));
    if (!e)
        return 0;
    e->latency_ns = latency;
    eunomia_submit(e, sizeof(*e));
    return 0;
}
