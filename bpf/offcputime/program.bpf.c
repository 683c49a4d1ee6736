/* offcputime: time threads spend off the CPU, by process, thread, user and kernel stack,
 * like bcc's offcputime, from sched:sched_switch alone.
 *
 * At a switch-out the previous task is still current: the filters apply to it, and its
 * stacks (where it blocks), process id and comm are recorded with the time, per thread.
 * At its next switch-in the time since then is added (in nanoseconds) to the counter of
 * those stacks. A switch the tracer never saw yields nothing rather than a wrong
 * interval: the record is deleted at every switch-in and replaced at every switch-out
 * (a record still there at a switch-out is a lost period, counted as a drop). The idle
 * task is never measured.
 *
 * The stack ids wait in the record while the thread is off the CPU. The worker empties
 * the stack map only when it is more than half full (raise --stack-storage-size for
 * many distinct stacks); a period spanning that moment shows as "[stack evicted]",
 * unless the same stack was recorded again in between, which gives it the same id.
 */
#define EUNOMIA_CUSTOM_SCHED_HOOKS
#include "eunomia.h"

#ifndef USER_ONLY
#define USER_ONLY 0
#endif
#ifndef KERNEL_ONLY
#define KERNEL_ONLY 0
#endif
#ifndef MIN_BLOCK_US
#define MIN_BLOCK_US 1
#endif
#ifndef MAX_BLOCK_US
#define MAX_BLOCK_US 0
#endif
#ifndef STATE_FILTER
#define STATE_FILTER -1
#endif
#ifndef STACK_STORAGE_SIZE
#define STACK_STORAGE_SIZE 16384
#endif

/* prev_state as sched_switch reports it: one bit per task state (S = 1, D = 2, T = 4 …),
 * 0 for a runnable task that gave the CPU away, and this bit when it was preempted. */
#define TASK_REPORT_MAX 0x100
#define TASK_REPORT_EXITED (0x10 | 0x20)  /* X, Z: the last switch-out, never switched in again */

struct offcpu_key {
    u64 cgroup_id;  /* the thread's, recorded at its switch-out */
    u32 pid;
    u32 tid;
    s32 user_stack;
    s32 kernel_stack;
    char comm[16];
};

struct off_start {
    u64 ts;
    u64 cgroup_id;
    u32 tgid;
    s32 user_stack;
    s32 kernel_stack;
    char comm[16];
};

BPF_STACK_TRACE(stacks, STACK_STORAGE_SIZE);
BPF_TABLE("lru_hash", u32, struct off_start, offcpu_since, 65536);  /* tid → switch-out */
BPF_HASH(offcputime_offcpu_seconds_total, struct offcpu_key, u64, 16384);

static __always_inline int state_selected(long state)
{
    if (STATE_FILTER < 0)
        return 1;
    if (STATE_FILTER == 0)  /* runnable: preempted or yielded */
        return (state & (TASK_REPORT_MAX - 1)) == 0;
    return (state & STATE_FILTER) != 0;
}

TRACEPOINT_PROBE(sched, sched_switch)
{
    u32 prev = args->prev_pid, next = args->next_pid;
    u64 now = bpf_ktime_get_ns();
    if (prev && !eunomia_skip_current()) {
        /* A record left from the last switch-out: the switch-in in between never reached
         * this program (on some kernels a switch-in that follows a wakeup occasionally
         * does not), so that period is lost: count it, and never measure from it. */
        if (offcpu_since.delete(&prev) == 0)
            eunomia_count_drop();
        if (state_selected(args->prev_state) && !(args->prev_state & TASK_REPORT_EXITED)) {
            struct off_start start = {.ts = now, .cgroup_id = eunomia_current_cgroup_id(),
                                      .tgid = bpf_get_current_pid_tgid() >> 32, .user_stack = -1, .kernel_stack = -1};
            if (!KERNEL_ONLY)
                start.user_stack = stacks.get_stackid(args, BPF_F_USER_STACK);
            if (!USER_ONLY)
                start.kernel_stack = stacks.get_stackid(args, 0);
            bpf_get_current_comm(&start.comm, sizeof(start.comm));
            if (offcpu_since.update(&prev, &start) != 0)
                eunomia_count_drop();
        }
    }
    if (!next)
        return 0;
    struct off_start *start = offcpu_since.lookup(&next);
    if (!start)
        return 0;
    u64 delta = now - start->ts;
    /* current is the previous task: everything about `next` comes from its record */
    struct offcpu_key key = {.cgroup_id = start->cgroup_id, .pid = start->tgid, .tid = next,
                             .user_stack = start->user_stack, .kernel_stack = start->kernel_stack};
    __builtin_memcpy(key.comm, start->comm, sizeof(key.comm));
    offcpu_since.delete(&next);
    if (delta < MIN_BLOCK_US * 1000ULL || (MAX_BLOCK_US && delta > MAX_BLOCK_US * 1000ULL))
        return 0;
    u64 zero = 0;
    u64 *total = offcputime_offcpu_seconds_total.lookup_or_try_init(&key, &zero);
    if (!total) {
        eunomia_count_drop();  /* the map is full until the next read drains it */
        return 0;
    }
    __sync_fetch_and_add(total, delta);
    return 0;
}

TRACEPOINT_PROBE(sched, sched_process_fork)
{
    eunomia_on_fork(args->child_pid);
    return 0;
}

TRACEPOINT_PROBE(sched, sched_process_exit)
{
    eunomia_on_exit();
    u32 tid = (u32)bpf_get_current_pid_tgid();
    offcpu_since.delete(&tid);
    return 0;
}
