/* pagefaults: user-space page faults per process, from exceptions:page_fault_user (x86).
 *
 * Counted in the kernel by process, comm and kind of access (the x86 error code: bit 1
 * write, bit 4 instruction fetch). The tracepoint runs in the faulting task, so the
 * current task is the right one. One event per fault only with --events: faults are
 * far too frequent to send each by default.
 */
#include "eunomia.h"

#define X86_PF_WRITE (1UL << 1)
#define X86_PF_INSTR (1UL << 4)

enum { ACCESS_READ = 0, ACCESS_WRITE = 1, ACCESS_EXEC = 2 };

#ifndef EMIT_EVENTS
#define EMIT_EVENTS 0
#endif

struct event {
    struct eunomia_header hdr;
    u64 address;
    u64 ip;
    u64 error_code;
    u8 access;
};

struct fault_key {
    u64 cgroup_id;  /* the faulting task's */
    u32 pid;
    char comm[16];
    u8 access;
};
/* Least recently faulting processes make room for new ones: a process's series stays
 * after it exits (short-lived processes are counted too) until the map needs its slot.
 * BCC's m.increment() never inserts into an lru_hash (BCC 0.26): see count_fault(). */
BPF_TABLE("lru_hash", struct fault_key, u64, pagefaults_faults_total, 10240);

static __always_inline void count_fault(struct fault_key *key)
{
    u64 zero = 0;
    u64 *count = pagefaults_faults_total.lookup_or_try_init(key, &zero);
    if (count)
        __sync_fetch_and_add(count, 1);
    else
        eunomia_count_drop();  /* the map is full */
}

TRACEPOINT_PROBE(exceptions, page_fault_user)
{
    if (eunomia_skip_current())
        return 0;
    u64 error_code = args->error_code;
    u8 access = (error_code & X86_PF_INSTR) ? ACCESS_EXEC : (error_code & X86_PF_WRITE) ? ACCESS_WRITE : ACCESS_READ;
    struct fault_key key;
    __builtin_memset(&key, 0, sizeof(key));  /* the padding is part of the map key */
    key.cgroup_id = eunomia_current_cgroup_id();
    key.pid = bpf_get_current_pid_tgid() >> 32;
    bpf_get_current_comm(&key.comm, sizeof(key.comm));
    key.access = access;
    count_fault(&key);
    if (!EMIT_EVENTS)
        return 0;
    struct event *e = eunomia_reserve_event(sizeof(struct event));
    if (!e)
        return 0;
    e->address = args->address;
    e->ip = args->ip;
    e->error_code = error_code;
    e->access = access;
    eunomia_submit(e, sizeof(*e));
    return 0;
}
