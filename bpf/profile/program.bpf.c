/* profile: CPU sampling with a perf event on every CPU (like bcc's profile): each sample
 * counts one (process, user stack, kernel stack) in the kernel; user space symbolises the
 * stacks and prints them folded or as a flame graph. Maps are drained at every read.
 */
#include <uapi/linux/bpf_perf_event.h>
#include "eunomia.h"

#ifndef USER_ONLY
#define USER_ONLY 0
#endif
#ifndef KERNEL_ONLY
#define KERNEL_ONLY 0
#endif
#ifndef INCLUDE_IDLE
#define INCLUDE_IDLE 0
#endif

struct sample_key {
    u64 cgroup_id;  /* the sampled task's */
    u32 pid;
    s32 user_stack;
    s32 kernel_stack;
    char comm[16];
};

#ifndef STACK_STORAGE_SIZE
#define STACK_STORAGE_SIZE 16384
#endif

BPF_STACK_TRACE(stacks, STACK_STORAGE_SIZE);
BPF_HASH(profile_samples_total, struct sample_key, u64, 16384);

int on_sample(struct bpf_perf_event_data *ctx)
{
    u32 pid = bpf_get_current_pid_tgid() >> 32;
    if (pid == 0 && !INCLUDE_IDLE)
        return 0;
    if (eunomia_skip_current())
        return 0;
    struct sample_key key;
    __builtin_memset(&key, 0, sizeof(key));  /* the padding is part of the map key */
    key.cgroup_id = eunomia_current_cgroup_id();
    key.pid = pid;
    key.user_stack = -1;
    key.kernel_stack = -1;
    bpf_get_current_comm(&key.comm, sizeof(key.comm));
    if (!KERNEL_ONLY)
        key.user_stack = stacks.get_stackid(&ctx->regs, BPF_F_USER_STACK);
    if (!USER_ONLY)
        key.kernel_stack = stacks.get_stackid(&ctx->regs, 0);
    u64 zero = 0;
    u64 *count = profile_samples_total.lookup_or_try_init(&key, &zero);
    if (!count) {
        eunomia_count_drop();  /* the map is full until the next read drains it */
        return 0;
    }
    __sync_fetch_and_add(count, 1);
    return 0;
}
