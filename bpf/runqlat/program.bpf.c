/* runqlat: run-queue latency, the time a runnable task waits for a CPU, like bcc's
 * runqlat, as a log2 histogram per cgroup in the kernel (optionally one per process).
 *
 * Enqueue: sched_wakeup / sched_wakeup_new (the woken task: args->pid), and sched_switch
 * for a previous task that is still runnable (preempted or yielding: prev_state has no
 * state bit in its low byte; the tracepoint reports a preemption as TASK_REPORT_MAX,
 * "R+"). Dequeue: sched_switch's next task. Times are kept per thread id.
 *
 * The task whose latency is measured is NOT the current task at either end (a wakeup
 * runs in the waker's context, a switch in the previous task's), and its cgroup, process
 * id and comm cannot be read from a tracepoint. So the wait measured at its switch-in is
 * kept per thread and counted at its next switch-out, where it is current: its cgroup,
 * process id and comm are then exact, and so are the -p/--pid, -n/--comm and cgroup
 * filters and the agent's self-filter. A wait shows in the histogram once the task has
 * left the CPU again (at the latest when it exits).
 */
#define EUNOMIA_CUSTOM_SCHED_HOOKS
#include "eunomia.h"

#ifndef PER_PROCESS
#define PER_PROCESS 0
#endif

#define TASK_STATE_MASK 0xff       /* the state bits sched_switch reports; 0 = runnable */
#define COMM_LEN 16

BPF_TABLE("lru_hash", u32, u64, enqueued, 65536);    /* tid → enqueue time */
BPF_TABLE("lru_hash", u32, u64, waited, 65536);      /* tid → its last wait (ns), until its switch-out */

struct hist_key {
    u64 cgroup_id;  /* the task that waited */
    u32 pid;
    char comm[COMM_LEN];
    u32 slot;
};
BPF_HASH(runqlat_latency_seconds, struct hist_key, u64, 16384);

static __always_inline void mark_enqueued(u32 tid)
{
    u64 now = bpf_ktime_get_ns();
    if (enqueued.update(&tid, &now) != 0)
        eunomia_count_drop();
}

static __always_inline void count_latency(struct hist_key *key)
{
    u64 zero = 0;
    u64 *count = runqlat_latency_seconds.lookup_or_try_init(key, &zero);
    if (count)
        __sync_fetch_and_add(count, 1);
    else
        eunomia_count_drop();  /* the map is full */
}

TRACEPOINT_PROBE(sched, sched_wakeup)
{
    u32 tid = args->pid;
    if (tid)  /* never the idle task */
        mark_enqueued(tid);
    return 0;
}

TRACEPOINT_PROBE(sched, sched_wakeup_new)
{
    u32 tid = args->pid;
    if (tid)
        mark_enqueued(tid);
    return 0;
}

TRACEPOINT_PROBE(sched, sched_switch)
{
    /* current is still the previous task here */
    u32 prev = args->prev_pid, next = args->next_pid;
    if (prev) {
        int skip = eunomia_skip_current();
        u64 *wait = waited.lookup(&prev);
        if (wait) {
            u64 delta = *wait;
            waited.delete(&prev);
            if (!skip) {
                struct hist_key key = {.cgroup_id = eunomia_current_cgroup_id()};
                if (PER_PROCESS) {
                    key.pid = bpf_get_current_pid_tgid() >> 32;
                    bpf_get_current_comm(key.comm, sizeof(key.comm));
                }
                key.slot = bpf_log2l(delta);
                count_latency(&key);
            }
        }
        if ((args->prev_state & TASK_STATE_MASK) == 0 && !skip)
            mark_enqueued(prev);  /* preempted or yielding: back in the queue */
    }
    if (!next)
        return 0;
    u64 *ts = enqueued.lookup(&next);
    if (!ts)
        return 0;
    u64 delta = bpf_ktime_get_ns() - *ts;
    enqueued.delete(&next);
    if (waited.update(&next, &delta) != 0)
        eunomia_count_drop();
    return 0;
}

TRACEPOINT_PROBE(sched, sched_process_fork)
{
    eunomia_on_fork(args->child_pid);
    return 0;
}

/* The task's last wait, if any, is counted at its final switch-out, after this; but
 * eunomia_on_exit() forgets an agent task now, so an agent task's wait is dropped here. */
TRACEPOINT_PROBE(sched, sched_process_exit)
{
    u32 tid = (u32)bpf_get_current_pid_tgid();
    if (eunomia_skip_current())
        waited.delete(&tid);
    eunomia_on_exit();
    enqueued.delete(&tid);
    return 0;
}
