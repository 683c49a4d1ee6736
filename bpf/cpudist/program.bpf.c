/* cpudist: how long tasks run on a CPU each time they are switched in, like bcc's
 * cpudist, as a log2 histogram in the kernel (optionally one per process); with
 * -O/--offcpu, how long they stay off the CPU instead.
 *
 * sched_switch alone: the next task's switch-in time is kept per thread id; at the
 * thread's next switch-out (when it is current, so its process id, comm and the common
 * filters are exact) the difference goes into the histogram. Off-CPU time is the mirror
 * image: from the switch-out (filters applied there, the task being current) to the next
 * switch-in. The idle task is not measured.
 *
 * Lost switches are counted, never measured across. On some kernels a sched_switch
 * occasionally never reaches BPF programs (seen here after a switch away from a thread
 * of the VM's init), which hides a switch-out of one task and a switch-in of another.
 * So a thread's record stays after it is used, as a marker of where the thread is:
 * - on-CPU: 0 = switched out. A switch-out that finds 0 missed the switch-in before it;
 *   a switch-in that finds a start time missed the switch-out before it, and the start
 *   it records is tainted (lowest bit set) so that the drop is counted at the thread's
 *   next switch-out, where the filters apply.
 * - off-CPU: ts 0 = on a CPU (after a measured interval). A switch-out that finds a
 *   start time missed the switch-in before it; a switch-in that finds 0 missed the
 *   switch-out before it.
 * Each such drop stands for exactly one interval the histogram does not have. A thread
 * whose switch-out and next switch-in are both missed yields one too-long interval
 * instead; that takes two misses in a row on the same thread.
 */
#define EUNOMIA_CUSTOM_SCHED_HOOKS
#include "eunomia.h"

#ifndef PER_PROCESS
#define PER_PROCESS 0
#endif
#ifndef OFF_CPU
#define OFF_CPU 0
#endif

#define COMM_LEN 16

struct hist_key {
    u64 cgroup_id;  /* the measured task's (always, also without -P) */
    u32 pid;
    char comm[COMM_LEN];
    u32 slot;
};

struct off_start {
    u64 ts;
    u64 cgroup_id;  /* recorded at the switch-out, while the task is current */
    u32 tgid;
    u32 pad;
};

BPF_TABLE("lru_hash", u32, u64, oncpu_since, 65536);             /* tid → switch-in time */
BPF_TABLE("lru_hash", u32, struct off_start, offcpu_since, 65536);  /* tid → switch-out time */
BPF_HASH(cpudist_oncpu_seconds, struct hist_key, u64, 16384);
BPF_HASH(cpudist_offcpu_seconds, struct hist_key, u64, 16384);

static __always_inline void count_oncpu(struct hist_key *key)
{
    u64 zero = 0;
    u64 *count = cpudist_oncpu_seconds.lookup_or_try_init(key, &zero);
    if (count)
        __sync_fetch_and_add(count, 1);
    else
        eunomia_count_drop();  /* the map is full */
}

static __always_inline void count_offcpu(struct hist_key *key)
{
    u64 zero = 0;
    u64 *count = cpudist_offcpu_seconds.lookup_or_try_init(key, &zero);
    if (count)
        __sync_fetch_and_add(count, 1);
    else
        eunomia_count_drop();  /* the map is full */
}

#define TAINTED 1ULL  /* lowest bit of an on-CPU start: a switch-out was missed before it */

static __always_inline void oncpu_switch(u32 prev, u32 next, u64 now)
{
    if (prev) {
        u64 *since = oncpu_since.lookup(&prev);
        if (since) {  /* none: the thread was on a CPU when the tracer started */
            u64 start = *since;
            *since = 0;
            if (!eunomia_skip_current()) {
                if (start == 0 || (start & TAINTED))
                    eunomia_count_drop();  /* a lost switch-in, or a lost switch-out before this start */
                if (start != 0) {
                    struct hist_key key = {.cgroup_id = eunomia_current_cgroup_id()};
                    if (PER_PROCESS) {
                        key.pid = bpf_get_current_pid_tgid() >> 32;
                        bpf_get_current_comm(key.comm, sizeof(key.comm));
                    }
                    key.slot = bpf_log2l(now - (start & ~TAINTED));
                    count_oncpu(&key);
                }
            }
        }
    }
    if (!next)
        return;
    u64 start = now & ~TAINTED;
    u64 *since = oncpu_since.lookup(&next);
    if (since && *since)
        start |= TAINTED;
    if (oncpu_since.update(&next, &start) != 0)
        eunomia_count_drop();
}

static __always_inline void offcpu_switch(u32 prev, u32 next, const char *next_comm, u64 now)
{
    if (prev) {
        if (eunomia_skip_current()) {
            offcpu_since.delete(&prev);
        } else {
            struct off_start *last = offcpu_since.lookup(&prev);
            if (last && last->ts)
                eunomia_count_drop();  /* the switch-in since that switch-out was lost */
            struct off_start start = {.ts = now, .cgroup_id = eunomia_current_cgroup_id(),
                                      .tgid = bpf_get_current_pid_tgid() >> 32};
            if (offcpu_since.update(&prev, &start) != 0)
                eunomia_count_drop();
        }
    }
    if (!next)
        return;
    struct off_start *start = offcpu_since.lookup(&next);
    if (!start)  /* switched out before the tracer started, or not measured */
        return;
    if (!start->ts) {
        eunomia_count_drop();  /* on a CPU since the last switch-in: its switch-out was lost */
        return;
    }
    struct hist_key key = {.cgroup_id = start->cgroup_id};  /* current is the previous task */
    if (PER_PROCESS) {
        key.pid = start->tgid;
        bpf_probe_read_kernel(key.comm, sizeof(key.comm), next_comm);
    }
    key.slot = bpf_log2l(now - start->ts);
    start->ts = 0;
    count_offcpu(&key);
}

TRACEPOINT_PROBE(sched, sched_switch)
{
    /* current is still the previous task here */
    u32 prev = args->prev_pid, next = args->next_pid;
    u64 now = bpf_ktime_get_ns();
    if (OFF_CPU)
        offcpu_switch(prev, next, args->next_comm, now);
    else
        oncpu_switch(prev, next, now);
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
    oncpu_since.delete(&tid);
    offcpu_since.delete(&tid);
    return 0;
}
