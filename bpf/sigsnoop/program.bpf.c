/* sigsnoop: signals generated, like bcc's sigsnoop, from signal:signal_generate alone.
 *
 * The tracepoint fires in the context of the task that generates the signal (kill(2),
 * tgkill(2), a child's exit notifying its parent, a fault …): that task is the sender and
 * the header describes it, so -p/--pid and -n/--comm select senders. The target comes
 * from the tracepoint's own arguments (its thread id and comm), as does the outcome. For
 * a signal generated from an interrupt (a timer expiring), the sender is whatever task
 * the interrupt found running.
 */
#include "eunomia.h"

#ifndef FILTER_SIGNAL
#define FILTER_SIGNAL 0
#endif
#ifndef FILTER_FAILED
#define FILTER_FAILED 0
#endif

/* include/trace/events/signal.h: enum trace_signal_result */
#define TRACE_SIGNAL_DELIVERED 0
#define TRACE_SIGNAL_IGNORED 1
#define TRACE_SIGNAL_ALREADY_PENDING 2
#define TRACE_SIGNAL_OVERFLOW_FAIL 3
#define TRACE_SIGNAL_LOSE_INFO 4

struct event {
    struct eunomia_header hdr;
    s32 tpid;
    s32 sig;
    s32 code;
    s32 si_errno;
    u8 result;
    u8 group;
    char tcomm[16];
};

struct signal_key {
    u64 cgroup_id;  /* the sender's */
    u32 sig;
    u32 result;
};
BPF_HASH(sigsnoop_signals_total, struct signal_key, u64, 10240);

static __always_inline void count_signal(struct signal_key *key)
{
    u64 zero = 0;
    u64 *count = sigsnoop_signals_total.lookup_or_try_init(key, &zero);
    if (count)
        __sync_fetch_and_add(count, 1);
    else
        eunomia_count_drop();  /* the map is full */
}

TRACEPOINT_PROBE(signal, signal_generate)
{
    if (FILTER_SIGNAL && args->sig != FILTER_SIGNAL)
        return 0;
    if (eunomia_skip_current())
        return 0;
    u32 result = (u32)args->result;
    struct signal_key key = {.cgroup_id = eunomia_current_cgroup_id(), .sig = (u32)args->sig, .result = result};
    count_signal(&key);
    /* Delivered and lose_info (queued without its siginfo) both leave the signal pending. */
    if (FILTER_FAILED && (result == TRACE_SIGNAL_DELIVERED || result == TRACE_SIGNAL_LOSE_INFO))
        return 0;
    struct event *e = eunomia_reserve_event(sizeof(struct event));
    if (!e)
        return 0;
    e->tpid = args->pid;
    e->sig = args->sig;
    e->code = args->code;
    e->si_errno = args->errno;
    e->result = (u8)result;
    e->group = args->group != 0;
    __builtin_memcpy(e->tcomm, args->comm, sizeof(e->tcomm));
    eunomia_submit(e, sizeof(*e));
    return 0;
}
