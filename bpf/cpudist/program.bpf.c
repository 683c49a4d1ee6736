/* cpudist: how long tasks run on a CPU each time they are switched in, like bcc's
 * cpudist, as a log2 histogram in the kernel (optionally one per process); with
 * -O/--offcpu, how long they stay off the CPU instead.
 *
 * sched_switch alone: the next task's switch-in time is kept per thread id; at the
 * thread's next switch-out (when it is current, so its process id, comm and the common
 * filters are exact) the difference goes into the histogram. The start is deleted at
 * every switch-out, so a switch-in the tracer never saw yields no sample rather than a
 * wrong one. Off-CPU time is the mirror image: from the switch-out (filters applied
 * there, the task being current) to the next switch-in. The idle task is not measured.
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

TRACEPOINT_PROBE(sched, sched_switch)
{
    /* current is still the previous task here */
    u32 prev = args->prev_pid, next = args->next_pid;
    u64 now = bpf_ktime_get_ns();
    if (!OFF_CPU) {
        if (prev) {
            u64 *since = oncpu_since.lookup(&prev);
            if (since) {
                u64 delta = now - *since;
                oncpu_since.delete(&prev);
                if (!eunomia_skip_current()) {
                    struct hist_key key = {.cgroup_id = eunomia_current_cgroup_id()};
                    if (PER_PROCESS) {
                        key.pid = bpf_get_current_pid_tgid() >> 32;
                        bpf_get_current_comm(key.comm, sizeof(key.comm));
                    }
                    key.slot = bpf_log2l(delta);
                    count_oncpu(&key);
                }
            }
        }
        if (next && oncpu_since.update(&next, &now) != 0)
            eunomia_count_drop();
        return 0;
    }
    if (prev && !eunomia_skip_current()) {
        struct off_start start = {.ts = now, .cgroup_id = eunomia_current_cgroup_id(),
                                  .tgid = bpf_get_current_pid_tgid() >> 32};
        if (offcpu_since.update(&prev, &start) != 0)
            eunomia_count_drop();
    }
    if (next) {
        struct off_start *start = offcpu_since.lookup(&next);
        if (start) {
            struct hist_key key = {.cgroup_id = start->cgroup_id};  /* current is the previous task */
            if (PER_PROCESS) {
                key.pid = start->tgid;
                bpf_probe_read_kernel(key.comm, sizeof(key.comm), args->next_comm);
            }
            key.slot = bpf_log2l(now - start->ts);
            offcpu_since.delete(&next);
            count_offcpu(&key);
        }
    }
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
