/*
 * sysreplay's capture program, compiled by BCC.
 *
 * This file is a template: capture/bpf_render.py replaces every placeholder (an upper-case name
 * between at-signs) from the capture options and fails if one is left, so the same text can be
 * rendered and checked without root. Nothing here reads a kernel struct: only BPF helpers and tracepoint fields, whose
 * layouts BCC takes from tracefs at compile time. That keeps the program correct when the kernel
 * headers (used only for BCC's helper definitions) are older than the running kernel.
 *
 * One record per selected syscall, emitted at sys_exit (a raw tracepoint: no trace-buffer
 * record is built for the program): the arguments are read back from the syscall's saved
 * registers (struct pt_regs, the entry frame: x86_64 ABI, not a kernel-version-dependent struct),
 * joined with the return value, the user memory they point to is read (paths, sockaddrs) and one
 * record sent. No per-syscall map update at entry, except for the few syscalls whose registers
 * do not survive to sys_exit or that another probe must recognise (STASHED: execve, execveat,
 * connect), whose arguments sys_enter stashes in a hash map keyed by thread id. Also:
 * - execve/execveat send their filename and argv at sys_enter (REC_EXEC_ARGS), since a successful
 *   exec replaces the memory those pointers refer to before sys_exit;
 * - a fork's child returns through sys_exit too (ret 0): only the parent's return is recorded;
 * - records without payload items are written straight into the ring buffer (reserve/submit),
 *   the others built in a per-CPU scratch buffer and copied (their size is known at the end);
 * - sched_process_fork / sched_process_exit send REC_FORK / REC_EXIT records that keep the
 *   userspace process table right; they are not trace rows. They are sent for every process,
 *   whatever the filters: a stale process table is wrong for the processes that are recorded.
 *
 * Following process trees (FOLLOW): the roots are rendered as constants and their descendants
 * enter follow_map when they are forked, so a child forked a microsecond after attaching is
 * followed too (seeding a map from userspace after attach would miss it). Entries leave the map
 * when their process exits; a root that exits is marked gone (FOLLOW_GONE), so a later process
 * reusing its pid is not followed.
 *
 * Record layout: struct rec_hdr, then up to N_ITEMS payload items back to back, item i being
 * len[i] bytes (0 = absent). Which syscall argument each item comes from is rendered per syscall
 * (the ITEM_CASES placeholder); userspace decodes items from the same table.
 */

#define SCRATCH_HALF @SCRATCH_HALF@ /* power of two; the per-CPU scratch buffer is twice this */
#define PATH_SLOT @PATH_SLOT@       /* most bytes read for one path or string, NUL included */
#define ARG_SLOT @ARG_SLOT@         /* most bytes read for one argv entry */
#define MAX_ARGS @MAX_ARGS@         /* most argv entries read at execve */
#define BLOB_SLOT 128               /* most bytes read for a sockaddr or a small struct */
#define SELF_TGID @SELF_TGID@       /* the capture process: its own syscalls are never recorded */
#define NR_EXECVE @NR_EXECVE@
#define NR_EXECVEAT @NR_EXECVEAT@
#define NR_CONNECT @NR_CONNECT@
#define HAS_GROUP_DEAD @HAS_GROUP_DEAD@   /* sched_process_exit has the group_dead field */
#define LOCAL_ENDPOINTS @LOCAL_ENDPOINTS@ /* sock:inet_sock_set_state gives connect's local end */
#define FOLLOW @FOLLOW@                   /* record only the FOLLOW_ROOTS trees */

#define OFF_MASK (SCRATCH_HALF - 1)
#define N_ITEMS 4

#define REC_SYSCALL 1
#define REC_EXEC_ARGS 2
#define REC_FORK 3
#define REC_EXIT 4

/* Indexes of the per-CPU counters; userspace sums them into the trace's drop counters. */
#define CNT_RINGBUF_FULL 0 /* a record was lost: the ring buffer was full */
#define CNT_STASH_FULL 1   /* a syscall was lost: the entry-argument map was full */
#define CNT_SCRATCH 2      /* no scratch buffer (cannot happen; counted to be sure) */
#define N_COUNTERS 3

/* Who emitted the record (cgroup_id .. comm) is contiguous: userspace uses those bytes, as one
 * slice of the decoded header, as the key of the process view it last built for them. */
struct rec_hdr {
    u64 ts;        /* bpf_ktime_get_ns() (CLOCK_MONOTONIC) at emission */
    s64 ret;       /* the syscall's return value */
    u64 args[6];   /* the raw syscall arguments (REC_FORK/REC_EXIT: see their probes) */
    u64 cgroup_id; /* bpf_get_current_cgroup_id(): cgroup v2 id */
    u32 tgid;
    u32 tid;
    u32 uid;
    u32 gid;
    char comm[16];
    u16 kind;      /* REC_* */
    u16 nr;        /* syscall number */
    u16 cpu;
    u16 len[N_ITEMS];
    u16 pad;
};

struct stash {
    u64 args[6];
    u64 id; /* the syscall number at entry: the one the record carries (see sys_exit) */
};

/* x86_64's struct pt_regs from r10 on (offset 56): the layout of the syscall entry frame, which
 * is ABI (arch/x86/include/uapi/asm/ptrace.h). The six arguments are di, si, dx, r10, r8, r9;
 * orig_ax is the syscall number. */
#define REGS_R10_OFFSET 56
#define REGS_ORIG_AX_OFFSET 120
struct regs_tail {
    u64 r10, r9, r8, ax, cx, dx, si, di, orig_ax;
};

struct endpoint {
    u16 family;
    u16 port; /* host byte order */
    u8 addr[16];
};

struct scratch {
    u8 data[2 * SCRATCH_HALF];
};

BPF_HASH(stash_map, u32, struct stash, @STASH_ENTRIES@);
BPF_PERCPU_ARRAY(scratch_map, struct scratch, 1);
BPF_PERCPU_ARRAY(counters, u64, N_COUNTERS);
BPF_RINGBUF_OUTPUT(events, @RINGBUF_PAGES@);
#if LOCAL_ENDPOINTS
BPF_HASH(local_map, u32, struct endpoint, @STASH_ENTRIES@);
#endif
#if FOLLOW
#define FOLLOW_YES 1
#define FOLLOW_GONE 2
/* tid -> FOLLOW_*: processes of the followed trees (their tgid) and their threads (their tid) */
BPF_HASH(follow_map, u32, u8, @FOLLOW_ENTRIES@);
#endif

static __always_inline void count(u32 idx)
{
    u64 *value = counters.lookup(&idx);
    if (value)
        *value += 1;
}

static __always_inline int syscall_selected(long id)
{
    switch (id) {
@SYSCALL_CASES@
        return 1;
    }
    return 0;
}

#if FOLLOW
static __always_inline int is_root(u32 tgid)
{
    switch (tgid) {
@FOLLOW_ROOTS@
        return 1;
    }
    return 0;
}

static __always_inline int followed(u32 tgid)
{
    u8 *state = follow_map.lookup(&tgid);
    if (state)
        return *state == FOLLOW_YES;
    return is_root(tgid);
}
#endif

static __always_inline int task_selected(u32 tgid)
{
    if (tgid == SELF_TGID)
        return 0;
@TASK_FILTER@
    return 1;
}

static __always_inline void fill_header(struct rec_hdr *h, u16 kind, u16 nr)
{
    u64 pid_tgid = bpf_get_current_pid_tgid();
    u64 uid_gid = bpf_get_current_uid_gid();
    h->ts = bpf_ktime_get_ns();
    h->cgroup_id = bpf_get_current_cgroup_id();
    h->ret = 0;
    for (int i = 0; i < 6; i++)
        h->args[i] = 0;
    h->tgid = pid_tgid >> 32;
    h->tid = (u32)pid_tgid;
    h->uid = (u32)uid_gid;
    h->gid = uid_gid >> 32;
    h->kind = kind;
    h->nr = nr;
    h->cpu = bpf_get_smp_processor_id();
    for (int i = 0; i < N_ITEMS; i++)
        h->len[i] = 0;
    h->pad = 0;
    bpf_get_current_comm(&h->comm, sizeof(h->comm));
}

/* The scratch buffer with a fresh header for the current task; NULL never happens in practice. */
static __always_inline struct scratch *begin(u16 kind, u16 nr)
{
    u32 zero = 0;
    struct scratch *buf = scratch_map.lookup(&zero);
    if (!buf) {
        count(CNT_SCRATCH);
        return 0;
    }
    fill_header((struct rec_hdr *)buf->data, kind, nr);
    return buf;
}

/* A syscall record without payload items, written in place in the ring buffer. */
static __always_inline void emit_plain(u16 nr, s64 ret, u64 *args)
{
    struct rec_hdr *h = events.ringbuf_reserve(sizeof(struct rec_hdr));
    if (!h) {
        count(CNT_RINGBUF_FULL);
        return;
    }
    fill_header(h, REC_SYSCALL, nr);
    h->ret = ret;
    for (int i = 0; i < 6; i++)
        h->args[i] = args[i];
    events.ringbuf_submit(h, BPF_RB_NO_WAKEUP);
}

static __always_inline void set_len(struct scratch *buf, int item, u32 len)
{
    struct rec_hdr *h = (struct rec_hdr *)buf->data;
    h->len[item & (N_ITEMS - 1)] = len;
}

static __always_inline void output(struct scratch *buf, u32 size)
{
    /* No wakeup: the poller wakes on a timer, which costs the kernel far less per record. */
    /* `buf`, not `buf->data`: BCC's rewriter trips over an array argument here. */
    if (events.ringbuf_output(buf, size & (2 * SCRATCH_HALF - 1), BPF_RB_NO_WAKEUP))
        count(CNT_RINGBUF_FULL);
}

/* Item readers: each appends at `off` and returns the new end. An item that does not fit in the
 * first half of the scratch buffer is left out (len 0); masking `off` keeps every access inside
 * the buffer for the verifier. */
static __always_inline u32 put_str(struct scratch *buf, u32 off, int item, u64 ptr)
{
    if (!ptr || off > SCRATCH_HALF - PATH_SLOT)
        return off;
    int n = bpf_probe_read_user_str(&buf->data[off & OFF_MASK], PATH_SLOT, (void *)ptr);
    if (n <= 0)
        return off;
    set_len(buf, item, n);
    return off + n;
}

static __always_inline u32 put_bytes(struct scratch *buf, u32 off, int item, u64 ptr, u64 len)
{
    if (!ptr || !len || off > SCRATCH_HALF - BLOB_SLOT)
        return off;
    u32 n = len < BLOB_SLOT ? len : BLOB_SLOT;
    n &= (2 * BLOB_SLOT - 1);
    if (bpf_probe_read_user(&buf->data[off & OFF_MASK], n, (void *)ptr))
        return off;
    set_len(buf, item, n);
    return off + n;
}

/* accept's peer address: its length is in user memory (socklen_t *), written by the kernel. */
static __always_inline u32 put_sockaddr_ptrlen(struct scratch *buf, u32 off, int item, u64 ptr,
                                               u64 len_ptr)
{
    u32 len = 0;
    if (!ptr || !len_ptr || bpf_probe_read_user(&len, sizeof(len), (void *)len_ptr))
        return off;
    return put_bytes(buf, off, item, ptr, len);
}

static __always_inline u32 put_local(struct scratch *buf, u32 off, int item, u32 tid)
{
#if LOCAL_ENDPOINTS
    struct endpoint *ep = local_map.lookup(&tid);
    if (!ep || off > SCRATCH_HALF - BLOB_SLOT)
        return off;
    bpf_probe_read_kernel(&buf->data[off & OFF_MASK], sizeof(*ep), ep);
    local_map.delete(&tid);
    set_len(buf, item, sizeof(*ep));
    return off + sizeof(*ep);
#else
    return off;
#endif
}

static __always_inline void emit_exec_args(long id, struct stash *s, u64 filename, u64 argv)
{
    struct scratch *buf = begin(REC_EXEC_ARGS, id);
    if (!buf)
        return;
    struct rec_hdr *h = (struct rec_hdr *)buf->data;
    for (int i = 0; i < 6; i++)
        h->args[i] = s->args[i];
    u32 off = put_str(buf, sizeof(struct rec_hdr), 0, filename);
    u32 start = off;
    for (int i = 0; i < MAX_ARGS; i++) {
        u64 ptr = 0;
        if (bpf_probe_read_user(&ptr, sizeof(ptr), (void *)(argv + i * sizeof(u64))) || !ptr)
            break;
        if (off > SCRATCH_HALF - ARG_SLOT)
            break;
        int n = bpf_probe_read_user_str(&buf->data[off & OFF_MASK], ARG_SLOT, (void *)ptr);
        if (n <= 0)
            break;
        off += n;
    }
    set_len(buf, 1, off - start);
    output(buf, off);
}

static __always_inline int stashed(long id)
{
    return id == NR_EXECVE || id == NR_EXECVEAT || id == NR_CONNECT;
}

static __always_inline int is_fork(long id)
{
    switch (id) {
@FORK_CASES@
        return 1;
    }
    return 0;
}

static __always_inline int has_items(long id)
{
    switch (id) {
@ITEM_SYSCALLS@
        return 1;
    }
    return 0;
}

/* ctx->args: the task's struct pt_regs *, the syscall number. */
RAW_TRACEPOINT_PROBE(sys_enter)
{
    long id = ctx->args[1];
    if (!stashed(id) || !syscall_selected(id))
        return 0;
    u64 pid_tgid = bpf_get_current_pid_tgid();
    u32 tid = (u32)pid_tgid;
    if (!task_selected(pid_tgid >> 32))
        return 0;
    struct regs_tail r = {};
    if (bpf_probe_read_kernel(&r, sizeof(r), (void *)(ctx->args[0] + REGS_R10_OFFSET)))
        return 0;
    struct stash s = {};
    s.args[0] = r.di;
    s.args[1] = r.si;
    s.args[2] = r.dx;
    s.args[3] = r.r10;
    s.args[4] = r.r8;
    s.args[5] = r.r9;
    s.id = id;
    if (stash_map.update(&tid, &s)) {
        count(CNT_STASH_FULL);
        return 0;
    }
    if (id == NR_EXECVE)
        emit_exec_args(id, &s, s.args[0], s.args[1]);
    else if (id == NR_EXECVEAT)
        emit_exec_args(id, &s, s.args[1], s.args[2]);
    return 0;
}

/* ctx->args: the task's struct pt_regs *, the return value. */
RAW_TRACEPOINT_PROBE(sys_exit)
{
    /* The number alone first: most syscalls of a machine are not selected, and one 8-byte
     * read costs them less than the whole register block. */
    long id = 0;
    if (bpf_probe_read_kernel(&id, sizeof(id), (void *)(ctx->args[0] + REGS_ORIG_AX_OFFSET)))
        return 0;
    /* A successful execveat reaches its exit as execve on some kernels (6.18 does): the number
     * recorded is the entry's, kept in the stash. */
    if (!syscall_selected(id) && id != NR_EXECVE)
        return 0;
    struct regs_tail r = {};
    if (bpf_probe_read_kernel(&r, sizeof(r), (void *)(ctx->args[0] + REGS_R10_OFFSET)))
        return 0;
    u64 pid_tgid = bpf_get_current_pid_tgid();
    u32 tid = (u32)pid_tgid;
    s64 ret = ctx->args[1];
    if (ret == 0 && is_fork(id))
        return 0; /* the child's return from fork: the parent's record tells it */
    struct stash s = {};
    if (stashed(id)) {
        struct stash *stashed_args = stash_map.lookup(&tid);
        if (!stashed_args)
            return 0; /* entered before the capture started, or filtered out at entry */
        s = *stashed_args;
        stash_map.delete(&tid);
        id = s.id;
    } else {
        if (!task_selected(pid_tgid >> 32))
            return 0;
        s.args[0] = r.di;
        s.args[1] = r.si;
        s.args[2] = r.dx;
        s.args[3] = r.r10;
        s.args[4] = r.r8;
        s.args[5] = r.r9;
    }
    if (!has_items(id)) {
        emit_plain(id, ret, s.args);
        return 0;
    }
    struct scratch *buf = begin(REC_SYSCALL, id);
    if (!buf)
        return 0;
    struct rec_hdr *h = (struct rec_hdr *)buf->data;
    h->ret = ret;
    for (int i = 0; i < 6; i++)
        h->args[i] = s.args[i];
    u32 off = sizeof(struct rec_hdr);
    switch (id) {
@ITEM_CASES@
    }
    output(buf, off);
    return 0;
}

/* args[0] = child tid, args[1] = parent tid; the record's tgid/tid are the parent's. */
TRACEPOINT_PROBE(sched, sched_process_fork)
{
#if FOLLOW
    /* A new thread enters the map too (keyed by its tid), and leaves it at its exit. */
    if (followed(bpf_get_current_pid_tgid() >> 32)) {
        u32 child = args->child_pid;
        u8 yes = FOLLOW_YES;
        follow_map.update(&child, &yes);
    }
#endif
    struct scratch *buf = begin(REC_FORK, 0);
    if (!buf)
        return 0;
    struct rec_hdr *h = (struct rec_hdr *)buf->data;
    h->args[0] = args->child_pid;
    h->args[1] = args->parent_pid;
    output(buf, sizeof(struct rec_hdr));
    return 0;
}

#if HAS_GROUP_DEAD
#define GROUP_DEAD (args->group_dead)
#else
#define GROUP_DEAD (tid == tgid) /* unknown: the main thread's exit is taken as the process's */
#endif

#if FOLLOW
/* Forget an exiting thread (its own entry) or process (its tgid's), marking a root gone. */
static __always_inline void forget(u32 tid, u32 tgid, int group_dead)
{
    if (tid != tgid)
        follow_map.delete(&tid);
    if (!group_dead)
        return;
    if (is_root(tgid)) {
        u8 gone = FOLLOW_GONE;
        follow_map.update(&tgid, &gone);
    } else {
        follow_map.delete(&tgid);
    }
}
#endif

/* args[0] = exiting tid, args[1] = 1 when the whole thread group is gone, 0 when not, 2 unknown. */
TRACEPOINT_PROBE(sched, sched_process_exit)
{
    u32 tid = (u32)bpf_get_current_pid_tgid();
    stash_map.delete(&tid); /* a task killed inside a syscall never reaches its sys_exit */
#if LOCAL_ENDPOINTS
    local_map.delete(&tid);
#endif
#if FOLLOW
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    forget(tid, tgid, GROUP_DEAD);
#endif
    struct scratch *buf = begin(REC_EXIT, 0);
    if (!buf)
        return 0;
    struct rec_hdr *h = (struct rec_hdr *)buf->data;
    h->args[0] = args->pid;
#if HAS_GROUP_DEAD
    h->args[1] = args->group_dead ? 1 : 0;
#else
    h->args[1] = 2;
#endif
    output(buf, sizeof(struct rec_hdr));
    return 0;
}

#if LOCAL_ENDPOINTS
/* A TCP connect picks its local address and port when the socket enters SYN_SENT, in the
 * connecting thread: remember them for that thread's connect record. */
TRACEPOINT_PROBE(sock, inet_sock_set_state)
{
    if (args->newstate != 2 /* TCP_SYN_SENT */ || args->protocol != 6 /* IPPROTO_TCP */)
        return 0;
    u32 tid = (u32)bpf_get_current_pid_tgid();
    if (!stash_map.lookup(&tid))
        return 0; /* not inside a recorded connect */
    struct endpoint ep = {};
    ep.family = args->family;
    ep.port = args->sport;
    if (args->family == 10 /* AF_INET6 */)
        bpf_probe_read_kernel(ep.addr, 16, args->saddr_v6);
    else
        bpf_probe_read_kernel(ep.addr, 4, args->saddr);
    local_map.update(&tid, &ep);
    return 0;
}
#endif
