/* syscount: system calls counted in the kernel, like bcc's syscount: calls and failures
 * per syscall (and per process with -P), and with -L a latency histogram per syscall.
 * Only raw_syscalls:sys_exit is needed for counting; -L adds sys_enter for the start time.
 */
#include "eunomia.h"

#ifndef PER_PROCESS
#define PER_PROCESS 0
#endif
#ifndef LATENCY
#define LATENCY 0
#endif
#ifndef FAILED_ONLY
#define FAILED_ONLY 0
#endif

/* Syscall numbers below this count in the cgroup's row (see eunomia.h); x32 numbers, with
 * bit 30 set, count in the hash maps. */
#define SYSCOUNT_COLUMNS 512

/* Every key begins with the calling task's cgroup id. */
struct syscall_key {
    u64 cgroup_id;
    u32 nr;
    u32 pad;  /* the map key is all 16 bytes: set to 0 */
};

struct process_key {
    u64 cgroup_id;
    u32 pid;
    u32 nr;
    char comm[16];
};

struct latency_key {
    u64 cgroup_id;
    u32 nr;
    u32 slot;
};

/* Per-CPU: the hot path never contends on a shared counter (the reader sums the CPUs).
 * Preallocated with one value per possible CPU: 8192 (cgroup, syscall) pairs cost about
 * 8192 × (16 + 8 × CPUs) bytes each, 4.3 MiB at 64 CPUs. */
BPF_PERCPU_HASH(syscount_calls_total, struct syscall_key, u64, 8192);
BPF_PERCPU_HASH(syscount_errors_total, struct syscall_key, u64, 8192);
/* The same counts for cgroups that have a row: cell row * SYSCOUNT_COLUMNS + syscall. An
 * array lookup instead of a hash lookup is what keeps counting below bcc's cost per call.
 * Each row costs 512 × 8 bytes per CPU per map (--cgroup-rows, default 32: 128 KiB a CPU each). */
BPF_PERCPU_ARRAY(syscount_calls_by_row, u64, EUNOMIA_ROW_CELLS(SYSCOUNT_COLUMNS));
BPF_PERCPU_ARRAY(syscount_errors_by_row, u64, EUNOMIA_ROW_CELLS(SYSCOUNT_COLUMNS));
BPF_HASH(syscount_process_calls_total, struct process_key, u64, 16384);
BPF_HASH(syscount_latency_seconds, struct latency_key, u64, 16384);
BPF_HASH(entered, u32, u64, 65536);

#if LATENCY  /* without -L this probe is not even attached: it would cost every syscall */
TRACEPOINT_PROBE(raw_syscalls, sys_enter)
{
    if (eunomia_skip_current())
        return 0;
    u32 tid = (u32)bpf_get_current_pid_tgid();
    u64 now = bpf_ktime_get_ns();
    if (entered.update(&tid, &now) != 0)
        eunomia_count_drop();
    return 0;
}
#endif

TRACEPOINT_PROBE(raw_syscalls, sys_exit)
{
    if (eunomia_skip_current())
        return 0;
    u64 latency = 0;
    if (LATENCY) {  /* before any filter: every entry recorded must be removed */
        u32 tid = (u32)bpf_get_current_pid_tgid();
        u64 *start = entered.lookup(&tid);
        if (start) {
            latency = bpf_ktime_get_ns() - *start;
            entered.delete(&tid);
        }
    }
    if (FAILED_ONLY && args->ret >= 0)
        return 0;
    u32 row;
    u64 cgroup_id = eunomia_current_cgroup_row(&row);
    u32 nr = (u32)args->id;
    u64 zero = 0;
    if (row < EUNOMIA_CGROUP_ROWS && nr < SYSCOUNT_COLUMNS) {
        u32 cell = row * SYSCOUNT_COLUMNS + nr;
        u64 *calls = syscount_calls_by_row.lookup(&cell);
        if (calls)
            (*calls)++;  /* this CPU's own counter: no atomic needed */
        if (args->ret < 0) {
            u64 *errors = syscount_errors_by_row.lookup(&cell);
            if (errors)
                (*errors)++;
        }
    } else {
        struct syscall_key key = {.cgroup_id = cgroup_id, .nr = nr, .pad = 0};
        u64 *calls = syscount_calls_total.lookup_or_try_init(&key, &zero);
        if (calls)
            (*calls)++;
        else
            eunomia_count_drop();
        if (args->ret < 0) {
            u64 *errors = syscount_errors_total.lookup_or_try_init(&key, &zero);
            if (errors)
                (*errors)++;
            else
                eunomia_count_drop();
        }
    }
    if (PER_PROCESS) {
        struct process_key pkey = {.cgroup_id = cgroup_id, .pid = bpf_get_current_pid_tgid() >> 32, .nr = nr};
        bpf_get_current_comm(&pkey.comm, sizeof(pkey.comm));
        u64 *pcalls = syscount_process_calls_total.lookup_or_try_init(&pkey, &zero);
        if (pcalls)
            __sync_fetch_and_add(pcalls, 1);
        else
            eunomia_count_drop();
    }
    if (latency) {
        struct latency_key lkey = {.cgroup_id = cgroup_id, .nr = nr, .slot = bpf_log2l(latency)};
        u64 *slot = syscount_latency_seconds.lookup_or_try_init(&lkey, &zero);
        if (slot)
            __sync_fetch_and_add(slot, 1);
        else
            eunomia_count_drop();
    }
    return 0;
}
