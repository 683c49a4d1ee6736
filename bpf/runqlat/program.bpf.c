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
 *
 * Lost switches are counted, never measured across. On some kernels a sched_switch
 * occasionally never reaches BPF programs, which hides one task's switch-out and
 * another's switch-in (and a sched_wakeup may be lost too). So each thread's record also
 * says whether it is on a CPU. A thread switched in twice with no switch-out between lost
 * a switch-out; one switched in after going to sleep with no wakeup seen lost its wakeup;
 * one that switches out while off its CPU as far as the tracepoints told lost its
 * switch-in. Each of these is one wait the histogram does not have, counted as a kernel
 * drop at the thread's switch-out, where the filters apply. A wakeup of a thread on its
 * CPU (woken before it switched out) is not a wait and is ignored.
 */
#define EUNOMIA_CUSTOM_SCHED_HOOKS
#include "eunomia.h"

#ifndef PER_PROCESS
#define PER_PROCESS 0
#endif

#define TASK_STATE_MASK 0xff       /* the state bits sched_switch reports; 0 = runnable */
#define TASK_REPORT_EXITED (0x10 | 0x20)  /* X, Z: the last switch-out, never switched in again */
#define COMM_LEN 16

/* Where a thread is, as far as the tracepoints told: kept from its first sighting to its
 * last switch-out (an LRU map: only a table full of live threads evicts one). */
struct task_sched {
    u64 enqueued;   /* runnable since (a wakeup, or a switch-out while runnable); 0: not waiting */
    u64 waited;     /* its last wait, counted at its next switch-out (has_wait) */
    u8 on_cpu;      /* switched in, and no switch-out seen since */
    u8 known_off;   /* known to be off its CPU since (switched out, woken, or new) */
    u8 has_wait;
    u8 lost;        /* a wait lost to a lost switch-out or wakeup, counted at the next switch-out */
    u32 pad;
};

BPF_TABLE("lru_hash", u32, struct task_sched, tasks, 65536);

struct hist_key {
    u64 cgroup_id;  /* the task that waited */
    u32 pid;
    char comm[COMM_LEN];
    u32 slot;
};
BPF_HASH(runqlat_latency_seconds, struct hist_key, u64, 16384);

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
    if (!tid)  /* never the idle task */
        return 0;
    struct task_sched *t = tasks.lookup(&tid);
    if (t) {
        if (!t->on_cpu)  /* woken on its CPU, before it switched out: it waits for nothing */
            t->enqueued = bpf_ktime_get_ns();
        return 0;
    }
    /* A woken thread is off its CPU, except one woken on its CPU that has not switched
     * since the tracer started: that one costs a drop at its switch-out, once. */
    struct task_sched fresh = {.enqueued = bpf_ktime_get_ns(), .known_off = 1};
    if (tasks.update(&tid, &fresh) != 0)
        eunomia_count_drop();
    return 0;
}

TRACEPOINT_PROBE(sched, sched_wakeup_new)
{
    u32 tid = args->pid;
    struct task_sched fresh = {.enqueued = bpf_ktime_get_ns(), .known_off = 1};  /* a new thread, never run */
    if (tid && tasks.update(&tid, &fresh) != 0)
        eunomia_count_drop();
    return 0;
}

static __always_inline void switched_out(u32 prev, long state, u64 now)
{
    struct task_sched *t = tasks.lookup(&prev);
    if (eunomia_skip_current()) {
        if (t)
            tasks.delete(&prev);
        return;
    }
    if (t) {
        /* a wait lost at its switch-in, or a switch-in lost (off its CPU, as far as the
         * tracepoints told, yet switching out): each is one wait the histogram does not have */
        if (t->lost)
            eunomia_count_drop();
        if (t->known_off && !t->on_cpu)
            eunomia_count_drop();
        if (t->has_wait) {
            struct hist_key key = {.cgroup_id = eunomia_current_cgroup_id()};
            if (PER_PROCESS) {
                key.pid = bpf_get_current_pid_tgid() >> 32;
                bpf_get_current_comm(key.comm, sizeof(key.comm));
            }
            key.slot = bpf_log2l(t->waited);
            count_latency(&key);
        }
    }
    if (state & TASK_REPORT_EXITED) {
        if (t)
            tasks.delete(&prev);
        return;
    }
    /* preempted or yielding: back in the queue */
    struct task_sched now_off = {.enqueued = (state & TASK_STATE_MASK) == 0 ? now : 0, .known_off = 1};
    if (t)
        *t = now_off;
    else if (tasks.update(&prev, &now_off) != 0)
        eunomia_count_drop();
}

static __always_inline void switched_in(u32 next, u64 now)
{
    struct task_sched *t = tasks.lookup(&next);
    if (!t) {
        struct task_sched fresh = {.on_cpu = 1};
        if (tasks.update(&next, &fresh) != 0)
            eunomia_count_drop();
        return;
    }
    /* lost waits are counted at its switch-out, where the filters apply */
    if (t->on_cpu) {
        t->lost = 1;  /* its switch-out was lost, and with it the wait's start */
    } else if (t->enqueued) {
        t->waited = now - t->enqueued;
        t->has_wait = 1;
    } else if (t->known_off) {
        t->lost = 1;  /* it went to sleep and runs again: its wakeup was lost */
    }
    t->enqueued = 0;
    t->on_cpu = 1;
}

TRACEPOINT_PROBE(sched, sched_switch)
{
    /* current is still the previous task here */
    u64 now = bpf_ktime_get_ns();
    if (args->prev_pid)
        switched_out(args->prev_pid, args->prev_state, now);
    if (args->next_pid)
        switched_in(args->next_pid, now);
    return 0;
}

TRACEPOINT_PROBE(sched, sched_process_fork)
{
    eunomia_on_fork(args->child_pid);
    return 0;
}

/* The task's last wait, if any, is counted at its final switch-out, after this; but
 * eunomia_on_exit() forgets an agent task now, so an agent task's record goes here. */
TRACEPOINT_PROBE(sched, sched_process_exit)
{
    u32 tid = (u32)bpf_get_current_pid_tgid();
    if (eunomia_skip_current())
        tasks.delete(&tid);
    eunomia_on_exit();
    return 0;
}
