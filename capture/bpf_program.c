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
 * connect, and the clone family, whose flags sched_process_fork reads), whose arguments
 * sys_enter stashes in a hash map keyed by thread id. Also:
 * - execve/execveat send their filename, argv and envp at sys_enter (REC_EXEC_ARGS), since a
 *   successful exec replaces the memory those pointers refer to before sys_exit;
 * - a fork's child returns through sys_exit too (ret 0): only the parent's return is recorded;
 * - fcntl's commands that change no fd are dropped at sys_exit (EXIT_FILTER), once its
 *   arguments are read: a test there costs less than a stash at entry; so is every recvmsg
 *   that received no fds (SCM_RIGHTS, see scm_rights): one user read of its msghdr; a
 *   recvmmsg sends one record per message that received fds, and none without (see
 *   emit_mmsg_rights): one user read per message looked at;
 * - records without payload items are written straight into the ring buffer (reserve/submit),
 *   the others built in a per-CPU scratch buffer and copied (their size is known at the end);
 * - sched_process_fork / sched_process_exit send REC_FORK / REC_EXIT records that keep the
 *   userspace process table right; they are not trace rows. They are sent for every process,
 *   whatever the filters: a stale process table is wrong for the processes that are recorded.
 *
 * Selecting containers (CGROUP_FILTER, `--container`): a record is kept when the task's cgroup-v2
 * id (bpf_get_current_cgroup_id) has the verdict CG_KEEP: its entry in cgroup_map, else
 * CGROUP_DEFAULT (CG_KEEP when `host` is selected, else CG_DROP). Userspace fills the map with
 * the cgroups that exist at start; cgroup_mkdir gives each new v2 cgroup its verdict from its
 * path before any task can enter it, so a container started later is recorded from its first
 * exec (see cgroup_path_verdict). The kernel only drops what it is sure of: an unsure path is
 * kept, and userspace, which filters again, corrects the verdict once it sees the cgroup's
 * records; it learns every new cgroup's path from a REC_CGROUP record, sent before any task can
 * enter the cgroup. The syscalls that keep the process table right (PROC_STATE: execve, chdir,
 * the set*id calls) pass whatever the cgroup: a container's first process descends from
 * processes outside it (the runtime), and its parent's name, exe and command line come from
 * their execs.
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
#define ENV_MAX @ENV_MAX@           /* most bytes of envp kept at execve (whole entries) */
#define MAX_ENV @MAX_ENV@           /* most envp entries read at execve */
#define BLOB_SLOT 128               /* most bytes read for a sockaddr or a small struct */
#define SELF_TGID @SELF_TGID@       /* the capture process: its own syscalls are never recorded */
#define NR_EXECVE @NR_EXECVE@
#define NR_EXECVEAT @NR_EXECVEAT@
#define NR_CONNECT @NR_CONNECT@
#define NR_CLONE @NR_CLONE@
#define NR_CLONE3 @NR_CLONE3@
#define NR_FORK @NR_FORK@
#define NR_VFORK @NR_VFORK@
#define HAS_GROUP_DEAD @HAS_GROUP_DEAD@   /* sched_process_exit has the group_dead field */
#define LOCAL_ENDPOINTS @LOCAL_ENDPOINTS@ /* sock:inet_sock_set_state gives connect's local end */
#define FIB_PORTS @FIB_PORTS@             /* fib:fib_table_lookup: IPv4 connect's port */
#define FIB6_PORTS @FIB6_PORTS@           /* fib6:fib6_table_lookup: IPv6 UDP connect's port */
#define FOLLOW @FOLLOW@                   /* record only the FOLLOW_ROOTS trees */
#define CGROUP_FILTER @CGROUP_FILTER@     /* record only the selected cgroups (--container) */

#define OFF_MASK (SCRATCH_HALF - 1)
#define N_ITEMS 4

#define REC_SYSCALL 1
#define REC_EXEC_ARGS 2
#define REC_FORK 3
#define REC_EXIT 4
#define REC_CGROUP 5 /* a new cgroup-v2 cgroup: args[0] its id, item 0 its path */

/* Indexes of the per-CPU counters; userspace sums them into the trace's drop counters. */
#define CNT_RINGBUF_FULL 0 /* a record was lost: the ring buffer was full */
#define CNT_STASH_FULL 1   /* a syscall was lost: the entry-argument map was full */
#define CNT_SCRATCH 2      /* no scratch buffer (cannot happen; counted to be sure) */
#define CNT_CGROUP_FULL 3  /* a new selected cgroup found cgroup_map full: its records are lost */
#define N_COUNTERS 4

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

/* A connect's local end in the making; only `ep` goes into the record. */
struct local {
    struct endpoint ep;
    u64 sk; /* the TCP socket (skaddr) whose handshake may still fill the port, else 0 */
};

struct scratch {
    u8 data[2 * SCRATCH_HALF];
};

BPF_HASH(stash_map, u32, struct stash, @STASH_ENTRIES@);
BPF_PERCPU_ARRAY(scratch_map, struct scratch, 1);
BPF_PERCPU_ARRAY(counters, u64, N_COUNTERS);
BPF_RINGBUF_OUTPUT(events, @RINGBUF_PAGES@);
#if LOCAL_ENDPOINTS
BPF_HASH(local_map, u32, struct local, @STASH_ENTRIES@); /* tid inside connect -> local end */
BPF_TABLE("lru_hash", u64, u32, sk_map, @STASH_ENTRIES@); /* socket in SYN_SENT -> its tid */
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

#if CGROUP_FILTER
#define CG_KEEP 1
#define CG_DROP 2
#define CGROUP_DEFAULT @CGROUP_DEFAULT@ /* the verdict of a cgroup not in cgroup_map */
#define CGROUP_NAMES @CGROUP_NAMES@     /* names are selected: any new container may be one */
#define CGPATH_MAX @CGPATH_MAX@          /* power of two; a longer path is kept (unsure) */
#define CG_IDS 4                        /* container ids looked at per path; more: unsure */
/* cgroup-v2 id -> CG_KEEP or CG_DROP, where it differs from CGROUP_DEFAULT */
BPF_HASH(cgroup_map, u64, u8, @CGROUP_ENTRIES@);
struct cgpath {
    char s[CGPATH_MAX];
    u64 keys[CG_IDS];   /* the first 12 digits of each 64-hex run, as a number */
    u32 starts[CG_IDS]; /* where each run starts */
    /* The path scan's state, kept in memory (volatile) rather than in registers: the verifier
     * then knows nothing of it and meets each step of the loop in one state, instead of one per
     * value of the run length (which exceeds its limit). */
    volatile u64 key;   /* the current run's first 12 digits */
    volatile u32 run;   /* the current run's length */
    volatile u32 n;     /* runs of 64 found */
    volatile u32 spaces;
};
BPF_PERCPU_ARRAY(cgpath_map, struct cgpath, 1);

static __always_inline int cgroup_kept(void)
{
    u64 id = bpf_get_current_cgroup_id();
    u8 *verdict = cgroup_map.lookup(&id);
    return (verdict ? *verdict : CGROUP_DEFAULT) == CG_KEEP;
}

/* The syscalls userspace applies to the process table even for processes it leaves out. */
static __always_inline int proc_state(long id)
{
    switch (id) {
@PROC_STATE_CASES@
        return 1;
    }
    return 0;
}
#endif

static __always_inline int task_selected(u32 tgid)
{
    if (tgid == SELF_TGID)
        return 0;
@TASK_FILTER@
    return 1;
}

/* The container filter, after the task's: one map look-up (syscall `id` of the record). */
static __always_inline int cgroup_selected(long id)
{
#if CGROUP_FILTER
    return proc_state(id) || cgroup_kept();
#else
    return 1;
#endif
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

/* recvmsg's fds received with SCM_RIGHTS. Once recvmsg returns, the kernel has written the
 * control messages at msg_control and their total length in msg_controllen (struct msghdr,
 * uapi ABI: at offsets 32 and 40 on x86_64). Each starts with a struct cmsghdr (cmsg_len u64,
 * cmsg_level i32, cmsg_type i32); SCM_RIGHTS comes last, after the SCM_SECURITY,
 * SCM_CREDENTIALS or SCM_PIDFD messages a socket option adds (scm_recv's order), so the first
 * SCM_MAX_CMSG of them are looked at. Returns how many bytes of int fds (SCM_MAX_FDS at most)
 * start at *data, 0 when none: a recvmsg without control data costs one 16-byte read. */
#define MSGHDR_CONTROL_OFFSET 32
#define SCM_MAX_CMSG 4
#define SCM_MAX_FDS (BLOB_SLOT / 4) /* 32: what one item holds */
#define SOL_SOCKET_LEVEL 1
#define SCM_RIGHTS_TYPE 1
struct cmsg_head {
    u64 len;
    s32 level;
    s32 type;
};

static __always_inline u32 scm_rights(u64 msg, u64 *data)
{
    u64 ctl[2] = {}; /* msg_control, msg_controllen */
    if (!msg || bpf_probe_read_user(ctl, sizeof(ctl), (void *)(msg + MSGHDR_CONTROL_OFFSET)))
        return 0;
    u64 at = 0;
    for (int i = 0; i < SCM_MAX_CMSG; i++) {
        struct cmsg_head c = {};
        if (!ctl[0] || at + sizeof(c) > ctl[1] ||
            bpf_probe_read_user(&c, sizeof(c), (void *)(ctl[0] + at)))
            return 0;
        if (c.len < sizeof(c) || c.len > ctl[1] - at)
            return 0;
        if (c.level == SOL_SOCKET_LEVEL && c.type == SCM_RIGHTS_TYPE) {
            u64 n = (c.len - sizeof(c)) / sizeof(s32);
            *data = ctl[0] + at + sizeof(c);
            return (n < SCM_MAX_FDS ? n : SCM_MAX_FDS) * sizeof(s32);
        }
        at += (c.len + 7) & ~7ULL; /* CMSG_ALIGN */
    }
    return 0;
}

static __always_inline u32 put_scm_rights(struct scratch *buf, u32 off, int item, u64 msg)
{
    u64 data = 0;
    u32 len = scm_rights(msg, &data);
    return len ? put_bytes(buf, off, item, data, len) : off;
}

/* recvmmsg's messages that received fds with SCM_RIGHTS: one record each, as libsinsp's driver
 * sends one recvmmsg event per message (its res the message's length). msgvec (args[1]) is an
 * array of struct mmsghdr (uapi: a struct msghdr, then the msg_len the kernel wrote; 64 bytes
 * each on x86_64); recvmmsg returns how many it filled, of which the first MMSG_MAX are looked
 * at, each as recvmsg's msghdr is (scm_rights). A record's ret is its message's msg_len, its
 * args the call's, its item 0 the fds (SCM_MAX_FDS at most). Called at sys_exit (EXIT_FILTER)
 * instead of the usual single record. */
#define MMSG_MAX 8
#define MMSGHDR_SIZE 64
#define MMSGHDR_LEN_OFFSET 56
static __always_inline void emit_mmsg_rights(u16 nr, s64 ret, u64 *args)
{
    for (int i = 0; i < MMSG_MAX; i++) {
        /* ret hidden from the compiler at each step: it would otherwise end the loop on
         * i == min(ret, MMSG_MAX), a bound the verifier cannot follow. */
        s64 filled = ret;
        asm volatile("" : "+r"(filled));
        if (i >= filled)
            return;
        u64 msg = args[1] + i * MMSGHDR_SIZE;
        u64 data = 0;
        u32 len = scm_rights(msg, &data);
        if (!len)
            continue;
        u32 msg_len = 0;
        bpf_probe_read_user(&msg_len, sizeof(msg_len), (void *)(msg + MMSGHDR_LEN_OFFSET));
        struct scratch *buf = begin(REC_SYSCALL, nr);
        if (!buf)
            return;
        struct rec_hdr *h = (struct rec_hdr *)buf->data;
        h->ret = msg_len;
        for (int j = 0; j < 6; j++)
            h->args[j] = args[j];
        output(buf, put_bytes(buf, sizeof(struct rec_hdr), 0, data, len));
    }
}

static __always_inline u32 put_local(struct scratch *buf, u32 off, int item, u32 tid)
{
#if LOCAL_ENDPOINTS
    struct local *l = local_map.lookup(&tid);
    if (!l)
        return off;
    if (off > SCRATCH_HALF - BLOB_SLOT) {
        local_map.delete(&tid);
        return off;
    }
    bpf_probe_read_kernel(&buf->data[off & OFF_MASK], sizeof(l->ep), &l->ep);
    local_map.delete(&tid);
    set_len(buf, item, sizeof(struct endpoint));
    return off + sizeof(struct endpoint);
#else
    return off;
#endif
}

/* envp after argv: whole entries (each cut at ARG_SLOT like argv's) while they fit in ENV_MAX
 * bytes. Item 3 is one byte, 1 when every entry was kept, so userspace knows a cut env. */
static __always_inline u32 put_env(struct scratch *buf, u64 envp)
{
    /* Where argv ended, read back from the header rather than carried over: the verifier then
     * meets this loop in one state, not once per way the argv loop ended (400,000 instructions
     * to verify instead of a few thousand). The barrier keeps the compiler from reusing the
     * values it stored. */
    asm volatile("" ::: "memory");
    struct rec_hdr *h = (struct rec_hdr *)buf->data;
    u32 off = sizeof(struct rec_hdr) + h->len[0] + h->len[1];
    u32 start = off;
    u8 complete = envp == 0; /* execve(path, argv, NULL): an empty environment */
    for (int i = 0; i < MAX_ENV && envp; i++) {
        u64 ptr = 0;
        if (bpf_probe_read_user(&ptr, sizeof(ptr), (void *)(envp + i * sizeof(u64))))
            break;
        if (!ptr) {
            complete = 1;
            break;
        }
        if (off > SCRATCH_HALF - ARG_SLOT)
            break;
        int n = bpf_probe_read_user_str(&buf->data[off & OFF_MASK], ARG_SLOT, (void *)ptr);
        if (n <= 0 || off + n - start > ENV_MAX)
            break;
        off += n;
    }
    set_len(buf, 2, off - start);
    buf->data[off & (2 * SCRATCH_HALF - 1)] = complete; /* off <= SCRATCH_HALF here */
    set_len(buf, 3, 1);
    return off + 1;
}

static __always_inline void emit_exec_args(long id, struct stash *s, u64 filename, u64 argv,
                                           u64 envp)
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
    off = put_env(buf, envp);
    output(buf, off);
}

/* The clone family is stashed for sched_process_fork (clone_flags), which runs inside it. */
static __always_inline int stashed(long id)
{
    switch (id) {
    case NR_EXECVE: case NR_EXECVEAT: case NR_CONNECT:
    case NR_CLONE: case NR_CLONE3: case NR_FORK: case NR_VFORK:
        return 1;
    }
    return 0;
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
    if (!task_selected(pid_tgid >> 32) || !cgroup_selected(id))
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
    if (id == NR_EXECVE || id == NR_EXECVEAT) { /* one inlined copy: execveat has a dirfd first */
        int at = id == NR_EXECVEAT;
        emit_exec_args(id, &s, at ? s.args[1] : s.args[0], at ? s.args[2] : s.args[1],
                       at ? s.args[3] : s.args[2]);
    }
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
        if (!task_selected(pid_tgid >> 32) || !cgroup_selected(id))
            return 0;
        s.args[0] = r.di;
        s.args[1] = r.si;
        s.args[2] = r.dx;
        s.args[3] = r.r10;
        s.args[4] = r.r8;
        s.args[5] = r.r9;
    }
@EXIT_FILTER@
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

/* The flags of the clone the current (parent) thread is inside, if it is a recorded
 * clone/clone3/fork/vfork: 1 with *flags set, else 0. They tell a new process (whose fds
 * userspace copies at the fork, as the kernel does) from a new thread. */
static __always_inline u64 clone_flags(u64 *flags)
{
    u32 tid = (u32)bpf_get_current_pid_tgid();
    struct stash *s = stash_map.lookup(&tid);
    if (!s)
        return 0;
    if (s->id == NR_CLONE) {
        *flags = s->args[0];
        return 1;
    }
    if (s->id == NR_CLONE3)
        return !bpf_probe_read_user(flags, sizeof(*flags), (void *)s->args[0]);
    return s->id == NR_FORK || s->id == NR_VFORK;
}

/* args[0] = child tid, args[1] = parent tid, args[2] = the clone flags when args[3] is 1 (see
 * clone_flags); the record's tgid/tid are the parent's. */
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
    u64 flags = 0;
    h->args[3] = clone_flags(&flags);
    h->args[2] = flags;
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

#if LOCAL_ENDPOINTS /* FIB_PORTS and FIB6_PORTS are rendered 0 without it */
/* Connect's local end, from tracepoint fields only (no kernel struct is read).
 *
 * The kernel picks a TCP socket's source port after it enters SYN_SENT, so that state gives the
 * local address and, for a bound socket, the port. The port of an unbound socket comes from
 * - IPv4 (TCP and UDP): the route lookup connect makes with the chosen source port, in the
 *   connecting thread (fib:fib_table_lookup; TCP redoes it once the port is picked);
 * - IPv6 UDP: its route lookup likewise (the source address is chosen after it: left as ::);
 * - IPv6 TCP: the handshake's SYN_SENT -> ESTABLISHED, often in softirq context on another
 *   task: found through the socket's address (sk_map). A non-blocking connect returns before
 *   that (EINPROGRESS) unless the peer is local, and its port stays 0.
 * Each keeps the result in local_map for the thread's connect record (put_local). */
static __always_inline struct local *connecting(u32 tid)
{
    struct stash *s = stash_map.lookup(&tid);
    if (!s || s->id != NR_CONNECT)
        return 0;
    struct local zero = {};
    local_map.insert(&tid, &zero); /* kept if there */
    return local_map.lookup(&tid);
}

/* A route lookup of the thread's connect: its destination port is connect's (not the lookup
 * of the SYN-ACK a local listener sends meanwhile, in this thread's softirq). */
static __always_inline struct local *connect_route(u16 sport, u16 dport)
{
    if (!sport)
        return 0; /* before the port is picked */
    u32 tid = (u32)bpf_get_current_pid_tgid();
    struct stash *s = stash_map.lookup(&tid);
    if (!s || s->id != NR_CONNECT)
        return 0;
    u16 port = 0; /* network order in the sockaddr, after its family */
    if (bpf_probe_read_user(&port, sizeof(port), (void *)(s->args[1] + 2)) ||
        __builtin_bswap16(port) != dport)
        return 0;
    return connecting(tid);
}
#endif

#if LOCAL_ENDPOINTS
TRACEPOINT_PROBE(sock, inet_sock_set_state)
{
    if (args->protocol != 6 /* IPPROTO_TCP */)
        return 0;
    u64 sk = (u64)args->skaddr;
    if (args->newstate == 2 /* TCP_SYN_SENT */) {
        u32 tid = (u32)bpf_get_current_pid_tgid();
        struct local *l = connecting(tid);
        if (!l)
            return 0; /* not inside a recorded connect */
        l->sk = sk;
        l->ep.family = args->family;
        l->ep.port = args->sport;
        if (args->family == 10 /* AF_INET6 */)
            bpf_probe_read_kernel(l->ep.addr, 16, args->saddr_v6);
        else
            bpf_probe_read_kernel(l->ep.addr, 4, args->saddr);
        sk_map.update(&sk, &tid);
        return 0;
    }
    if (args->oldstate != 2)
        return 0;
    u32 *found = sk_map.lookup(&sk);
    if (!found)
        return 0;
    u32 tid = *found;
    sk_map.delete(&sk);
    struct local *l = local_map.lookup(&tid);
    if (args->newstate != 1 /* TCP_ESTABLISHED */ || !l || l->sk != sk)
        return 0; /* failed, or the connect has returned */
    l->ep.port = args->sport;
    return 0;
}
#endif

#if FIB_PORTS
TRACEPOINT_PROBE(fib, fib_table_lookup)
{
    struct local *l = connect_route(args->sport, args->dport);
    if (!l)
        return 0;
    u32 src = 0;
    bpf_probe_read_kernel(&src, 4, args->src);
    if (src || l->ep.family != 2 /* AF_INET */) {
        __builtin_memset(l->ep.addr, 0, 16);
        __builtin_memcpy(l->ep.addr, &src, 4); /* the first lookup may not have one yet */
    }
    l->ep.family = 2;
    l->ep.port = args->sport;
    return 0;
}
#endif

#if FIB6_PORTS
TRACEPOINT_PROBE(fib6, fib6_table_lookup)
{
    struct local *l = connect_route(args->sport, args->dport);
    if (!l)
        return 0;
    if (l->ep.family != 10) {
        bpf_probe_read_kernel(l->ep.addr, 16, args->src);
        l->ep.family = 10;
    }
    l->ep.port = args->sport;
    return 0;
}
#endif

#if CGROUP_FILTER
/* Container cgroups, as capture/proc_table.py's _CONTAINER_PATTERNS name them (libsinsp's
 * layouts): a 64-hex id with one of the texts of bpf_render.CONTAINER_ID_CONTEXTS before it
 * (and after it, for some), or the kubepods layout. The kernel tells a container from these only
 * to drop it (`host` selected): a path it cannot be sure of is kept, and userspace decides. */
#define CH(i) (p->s[(i) & (CGPATH_MAX - 1)])

/* kubepods: "/kubepods", no white space, then "/pod" with [0-9a-f_-] and "/" before the id,
 * taken as sure when the path starts with /kubepods (the regex allows more: those are kept). */
static __always_inline int kubepods_at(struct cgpath *p, u32 start, int spaces)
{
    if (spaces || start < 16 || !(@KUBEPODS_AT_START@) || CH(start - 1) != '/')
        return 0;
    u32 end = start - 1; /* the pod segment ends here */
    for (u32 k = 1; k < 48; k++) { /* "pod" and a uid, with - or _ (36 characters) */
        if (end < k + 4)
            return 0;
        char c = CH(end - k);
        if ((u8)(c - '0') < 10 || (u8)(c - 'a') < 6 || c == '_' || c == '-')
            continue; /* the d of "pod" is one of these */
        return c == 'o' && k >= 3 && CH(end - k - 1) == 'p' && CH(end - k - 2) == '/';
    }
    return 0;
}

/* 1 when the 64-hex run at `start` is a container id by its context. */
static __always_inline int container_at(struct cgpath *p, u32 start)
{
@CONTAINER_AT@
    return 0;
}

/* 1 when a container id (12 hex digits, as a number) is selected. */
static __always_inline int selected_id(u64 key)
{
@CGROUP_ID_TEST@
}

/* The verdict of a new cgroup from its path (p->s, len bytes and the NUL). A selected
 * container's id is a run of 64 hex digits that starts with it (how userspace finds ids); its
 * nested cgroups have it in their path too. */
static __always_inline u8 cgroup_path_verdict(struct cgpath *p, u32 len)
{
    if (len >= CGPATH_MAX - 1)
        return CG_KEEP; /* cut: an id may be further on */
    /* Hidden from the compiler, which would otherwise drop the loop's i < CGPATH_MAX (len is
     * less) and leave the verifier a loop bounded by nothing it knows. */
    asm volatile("" : "+r"(len));
    p->key = 0;
    p->run = 0;
    p->n = 0;
    p->spaces = 0;
    for (u32 i = 0; i < CGPATH_MAX; i++) {
        if (i >= len)
            break;
        /* Few branches per character: the verifier keeps one pending state per branch of the
         * whole scan, and has a limit. */
        u8 c = p->s[i];
        u8 digit = c - '0';
        if (digit >= 10) {
            u8 letter = c - 'a';
            if (letter >= 6) { /* not a hex digit (unsigned: below 'a' too) */
                if (c <= ' ')
                    p->spaces = 1; /* white space, or a control character */
                p->run = 0;
                p->key = 0;
                continue;
            }
            digit = letter + 10;
        }
        u32 run = p->run + 1;
        p->run = run;
        if (run <= 12)
            p->key = (p->key << 4) | digit;
        if (run == 64) {
            u32 n = p->n;
            if (n >= CG_IDS)
                return CG_KEEP; /* more ids than looked at: unsure */
            p->starts[n & (CG_IDS - 1)] = i - 63;
            p->keys[n & (CG_IDS - 1)] = p->key;
            p->n = n + 1;
        }
    }
    u32 n = p->n;
    int spaces = p->spaces;
    int container = 0;
    /* Written out, not a loop: the compiler drops a loop's j < CG_IDS (n is at most that). */
#define CHECK_ID(j)                                                    \
    if (n > j) {                                                       \
        if (selected_id(p->keys[j]))                                   \
            return CG_KEEP;                                            \
        container |= container_at(p, p->starts[j] & (CGPATH_MAX - 1)); \
    }
    CHECK_ID(0)
    CHECK_ID(1)
    CHECK_ID(2)
    CHECK_ID(3)
    /* kubepods for the first id only (one per path in that layout): its loop, once per id, is
     * more than the verifier takes */
    if (n)
        container |= kubepods_at(p, p->starts[0] & (CGPATH_MAX - 1), spaces);
    if (CGROUP_DEFAULT == CG_DROP) /* ids only: no selected id, so not selected */
        return CGROUP_NAMES && n ? CG_KEEP : CG_DROP;
    return container && !CGROUP_NAMES ? CG_DROP : CG_KEEP;
}

/* A new cgroup: its verdict, before any task can be moved into it. */
TRACEPOINT_PROBE(cgroup, cgroup_mkdir)
{
    if (args->root != 0)
        return 0; /* a cgroup-v1 hierarchy: its ids are another numbering */
    u32 zero = 0;
    struct cgpath *p = cgpath_map.lookup(&zero);
    if (!p)
        return 0;
    u16 at = args->data_loc_path & 0xFFFF;
    int len = bpf_probe_read_kernel_str(p->s, CGPATH_MAX, (char *)args + at);
    u8 verdict = len <= 0 ? CG_KEEP : cgroup_path_verdict(p, len - 1);
    u64 id = args->id;
    if (verdict != CGROUP_DEFAULT && cgroup_map.update(&id, &verdict) && verdict == CG_KEEP)
        count(CNT_CGROUP_FULL);
    /* Userspace learns the cgroup before any record of a task in it: a short-lived container's
     * cgroup may be gone before those records are enriched, and its path names the container. */
    struct scratch *buf = begin(REC_CGROUP, 0);
    if (!buf)
        return 0;
    struct rec_hdr *h = (struct rec_hdr *)buf->data;
    h->args[0] = id;
    int n = bpf_probe_read_kernel_str(&buf->data[sizeof(struct rec_hdr)], CGPATH_MAX,
                                      (char *)args + at);
    if (n < 0)
        n = 0;
    n &= 2 * CGPATH_MAX - 1;
    set_len(buf, 0, n);
    output(buf, sizeof(struct rec_hdr) + n);
    return 0;
}

TRACEPOINT_PROBE(cgroup, cgroup_rmdir)
{
    if (args->root != 0)
        return 0;
    u64 id = args->id;
    cgroup_map.delete(&id);
    return 0;
}
#endif
