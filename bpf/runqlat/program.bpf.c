/* runqlat: run-queue latency, the time a runnable task waits for a CPU, like bcc's
 * runqlat, as a log2 histogram in the kernel (optionally one per process).
 *
 * Enqueue: sched_wakeup / sched_wakeup_new (the woken task: args->pid), and sched_switch
 * for a previous task that is still runnable (preempted or yielding: prev_state has no
 * state bit in its low byte; the tracepoint reports a preemption as TASK_REPORT_MAX,
 * "R+"). Dequeue: sched_switch's next task. Times are kept per thread id.
 *
 * The task whose latency is measured is mostly NOT the current task (a wakeup runs in
 * the waker's context, a switch in the previous task's), so the -p/--pid and -n/--comm
 * filters and the agent's self-filter are applied here to the measured task: its comm
 * comes from the tracepoint and its process id (tgid) from a map of thread → process
 * filled whenever a thread is current (at every sched_switch away from it, and at clone
 * time for new threads, from the clone flags). A thread never seen that way (asleep since
 * before the tracer started) counts as its own process until it has run once: exact for
 * single-threaded processes and thread-group leaders.
 */
#define EUNOMIA_CUSTOM_SCHED_HOOKS
#include "eunomia.h"

#ifndef PER_PROCESS
#define PER_PROCESS 0
#endif

#define TASK_STATE_MASK 0xff       /* the state bits sched_switch reports; 0 = runnable */
#define CLONE_THREAD 0x00010000ULL
#define COMM_LEN 16

BPF_TABLE("lru_hash", u32, u64, enqueued, 65536);    /* tid → enqueue time */
BPF_TABLE("lru_hash", u32, u32, tgids, 65536);       /* tid → tgid, learnt while current */
BPF_TABLE("lru_hash", u32, u64, cloning, 4096);      /* tid → flags of its clone in progress */

struct hist_key {
    u32 pid;
    char comm[COMM_LEN];
    u32 slot;
};
BPF_HASH(runqlat_latency_seconds, struct hist_key, u64, 16384);

static __always_inline u32 tgid_of(u32 tid)
{
    u32 *tgid = tgids.lookup(&tid);
    return tgid ? *tgid : tid;
}

/* The agent's self-filter and the common filters, for a task that is not current. */
static __always_inline int skip_task(u32 tid, u32 tgid, const char *comm)
{
    if (tid == 0)
        return 1;  /* the idle task */
    if (tgid == EUNOMIA_SELF_PID || tgid == EUNOMIA_AGENT_PID)
        return 1;
    if (eunomia_agent_pids.lookup(&tgid) || eunomia_agent_pids.lookup(&tid))
        return 1;
    if (EUNOMIA_FILTER_PID && tgid != EUNOMIA_FILTER_PID)
        return 1;
    if (EUNOMIA_FILTER_COMM_SET) {
        u64 words[2] = {};
        bpf_probe_read_kernel(words, sizeof(words), comm);
        if (words[0] != EUNOMIA_FILTER_COMM_LO || words[1] != EUNOMIA_FILTER_COMM_HI)
            return 1;
    }
    return 0;
}

static __always_inline void mark_enqueued(u32 tid)
{
    u64 now = bpf_ktime_get_ns();
    if (enqueued.update(&tid, &now) != 0)
        eunomia_count_drop();
}

static __always_inline void count_latency(struct hist_key *key)
{
    u64 one = 1;
    u64 *count = runqlat_latency_seconds.lookup(key);
    if (count) {
        __sync_fetch_and_add(count, 1);
        return;
    }
    if (runqlat_latency_seconds.insert(key, &one) != 0) {
        count = runqlat_latency_seconds.lookup(key);  /* inserted meanwhile by another CPU */
        if (count)
            __sync_fetch_and_add(count, 1);
        else
            eunomia_count_drop();                  /* the map is full */
    }
}

TRACEPOINT_PROBE(sched, sched_wakeup)
{
    u32 tid = args->pid;
    if (skip_task(tid, tgid_of(tid), args->comm))
        return 0;
    mark_enqueued(tid);
    return 0;
}

/* Runs in the creator's context: a CLONE_THREAD child belongs to the creator's process,
 * any other child is a process of its own. */
TRACEPOINT_PROBE(sched, sched_wakeup_new)
{
    u32 tid = args->pid;
    u64 creator = bpf_get_current_pid_tgid();
    u32 creator_tid = (u32)creator;
    u64 *flags = cloning.lookup(&creator_tid);
    u32 tgid = (flags && (*flags & CLONE_THREAD)) ? (u32)(creator >> 32) : tid;
    if (flags)
        cloning.delete(&creator_tid);
    if (tgid != tid)
        tgids.update(&tid, &tgid);
    if (skip_task(tid, tgid, args->comm))
        return 0;
    mark_enqueued(tid);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_enter_clone)
{
    u32 tid = (u32)bpf_get_current_pid_tgid();
    u64 flags = args->clone_flags;
    cloning.update(&tid, &flags);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_enter_clone3)
{
    u32 tid = (u32)bpf_get_current_pid_tgid();
    u64 flags = 0;  /* struct clone_args begins with u64 flags (uapi, stable) */
    bpf_probe_read_user(&flags, sizeof(flags), args->uargs);
    cloning.update(&tid, &flags);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_exit_clone)
{
    u32 tid = (u32)bpf_get_current_pid_tgid();
    cloning.delete(&tid);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_exit_clone3)
{
    u32 tid = (u32)bpf_get_current_pid_tgid();
    cloning.delete(&tid);
    return 0;
}

TRACEPOINT_PROBE(sched, sched_switch)
{
    /* current is still the previous task here */
    u32 prev = args->prev_pid, next = args->next_pid;
    if (prev) {
        u32 tgid = bpf_get_current_pid_tgid() >> 32;
        u32 *known = tgids.lookup(&prev);
        if (!known || *known != tgid)
            tgids.update(&prev, &tgid);
        if ((args->prev_state & TASK_STATE_MASK) == 0 && !eunomia_skip_current())
            mark_enqueued(prev);  /* preempted or yielding: back in the queue */
    }
    if (!next)
        return 0;
    u64 *ts = enqueued.lookup(&next);
    if (!ts)
        return 0;
    u64 delta = bpf_ktime_get_ns() - *ts;
    enqueued.delete(&next);
    struct hist_key key = {};
    if (PER_PROCESS) {
        key.pid = tgid_of(next);
        bpf_probe_read_kernel(key.comm, sizeof(key.comm), args->next_comm);
    }
    key.slot = bpf_log2l(delta);
    count_latency(&key);
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
    enqueued.delete(&tid);
    tgids.delete(&tid);
    cloning.delete(&tid);
    return 0;
}
