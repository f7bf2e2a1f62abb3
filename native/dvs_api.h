/*
 * dvs_api.h - the DVK user-space interface as dvsd sees it.
 *
 * Written for dvsd from the layouts in the DVK ABI reference (dvk-abi.md); it
 * is not a copy of the DVK headers.  It describes the NEW tree (the
 * include/com headers, /dev/dvk with ioctls, magic 0xE3).  User-space layout: cpu masks are glibc
 * cpu_set_t (1024 bits = 128 bytes), struct timespec is the libc one.
 *
 * The part between DVSD_CDEF_BEGIN and DVSD_CDEF_END is plain C that cffi's
 * cdef parser reads as is (src/dvsd/kernel/cffi_backend.py): no preprocessor
 * lines and no expressions there.  cffi is told what cpu_set_t and struct
 * timespec are before it reads this part.
 */
#ifndef DVSD_DVS_API_H
#define DVSD_DVS_API_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <sched.h>      /* cpu_set_t */
#include <time.h>       /* struct timespec */
#include <sys/types.h>  /* pid_t */

/* ---- compiled-in limits (dvs_config.h / config.h of the DVK) ---------- */
#define NR_DCS          32
#define NR_NODES        32
#define NR_FIXED_TASKS  3
#define NR_SYSTASKS     32
#define NR_TASKS        35      /* NR_FIXED_TASKS + NR_SYSTASKS */
#define NR_PROCS        221     /* 256 - NR_TASKS */
#define NR_SYS_PROCS    64
#define MAXCOPYBUF      65536
#define MAXCOPYLEN      1048576 /* 16 * MAXCOPYBUF */
#define MAXDVSNAME      16      /* every name buffer includes its NUL */
#define MAXDCNAME       16
#define MAXNODENAME     16
#define MAXPROCNAME     16
#define MAXPROXYNAME    16
#define DVS_VERSION     202202

/* ---- special values --------------------------------------------------- */
#define LOCALNODE       (-1)
#define PROC_NO_PID     (-1)
#define NO_PROXIES      (-1)
#define PROXY_NO_DC     (-1)
#define ANY_EP          0x7ace
#define NONE_EP         0x6ace
#define SELF_EP         0x8ace
/* endpoint = generation * DVS_GEN_SIZE + slot */
#define DVS_GEN_SIZE    (NR_TASKS + SELF_EP + 1)

#define DC_RUNNING      0x00
#define DC_FREE         0x02

#define NODE_FREE        0x0
#define NODE_ATTACHED    0x2
#define NODE_SCONNECTED  0x4
#define NODE_RCONNECTED  0x8

#define PROXIES_FREE        0x0
#define PROXIES_INUSE       0x1
#define PROXIES_SCONNECTED  0x2
#define PROXIES_RCONNECTED  0x4

#define CONNECT_SPROXY     1
#define CONNECT_RPROXY     2
#define DISCONNECT_SPROXY  3
#define DISCONNECT_RPROXY  4

#define SLOT_FREE   0x0001
#define MIGRATING   0x0800
#define REMOTE      0x1000

#define MIS_PROXY      0x0001
#define MIS_CONNECTED  0x0002
#define MIS_GRPLEADER  0x0020

#define DVK_IPC          0x001
#define DVK_IOCTL        0x002
#define DVK_USERMODE     0x004
#define DVK_INITIALIZED  0x100

#define USER_PRIV    0
#define SERVER_PRIV  1
#define TASK_PRIV    2
#define SYSTEM_PRIV  3
#define KERNEL_PRIV  4
#define PROXY_PRIV   5

#define MIGR_START     0
#define MIGR_COMMIT    1
#define MIGR_ROLLBACK  2

#define SELF_BIND      0
#define LCL_BIND       1
#define RMT_BIND       2
#define BKUP_BIND      3
#define REPLICA_BIND   4

/* ---- error codes: the kernel answers -code; ioctl gives -1, errno=code -- */
#define EDVSPERM        (-1)
#define EDVS2BIG        (-7)
#define EDVSFAULT       (-14)
#define EDVSNOTTY       (-25)
#define EDVSRANGE       (-34)
#define EDVSNOSYS       (-38)
#define EDVSDSTDIED     (-109)
#define EDVSBADNODEID   (-301)
#define EDVSBADDCID     (-302)
#define EDVSDCNOTRUN    (-303)
#define EDVSBADPROC     (-304)
#define EDVSBADPID      (-305)
#define EDVSENDPOINT    (-306)
#define EDVSNOPROXY     (-307)
#define EDVSLCLPROC     (-309)
#define EDVSNOTBIND     (-310)
#define EDVSDVSBUSY     (-317)
#define EDVSDVSINIT     (-318)
#define EDVSNODCNODE    (-319)
#define EDVSNODEFREE    (-325)
#define EDVSDCNODE      (-326)
#define EDVSPROXYFREE   (-333)
#define EDVSGRPLEADER   (-334)
#define EDVSPRIVILEGES  (-335)
#define EDVSBINDTYPE    (-336)
#define EDVSSLOTUSED    (-337)
#define EDVSBADRANGE    (-338)
#define EDVSBADVALUE    (-339)
#define EDVSRSCBUSY     (-342)
#define EDVSNAMESIZE    (-343)
#define EDVSPROXYID     (-345)
/* The full table (every code with its meaning) is src/dvsd/kernel/abi.py. */

/* ---- ioctl requests on /dev/dvk: _IOW/_IOR(0xE3, call, int) ----------- */
#define DVK_IOC_MAGIC        0xE3
#define DVK_IOC_DCINIT       0x4004E301
#define DVK_IOC_DCEND        0x4004E308
#define DVK_IOC_BIND         0x4004E309
#define DVK_IOC_GETPRIV      0x8004E30B
#define DVK_IOC_SETPRIV      0x4004E30C
#define DVK_IOC_GETDCINFO    0x8004E30E
#define DVK_IOC_GETPROCINFO  0x8004E30F
#define DVK_IOC_PROXYBIND    0x4004E311
#define DVK_IOC_PROXYUNBIND  0x4004E312
#define DVK_IOC_GETNODEINFO  0x8004E313
#define DVK_IOC_ADDNODE      0x4004E316
#define DVK_IOC_DELNODE      0x4004E317
#define DVK_IOC_DVSINIT      0x4004E318
#define DVK_IOC_DVSEND       0x0000E319
#define DVK_IOC_GETDVSINFO   0x8004E31B
#define DVK_IOC_PROXYCONN    0x4004E31C
#define DVK_IOC_MIGRATE      0x4004E31E
#define DVK_IOC_NODEUP       0x4004E31F
#define DVK_IOC_NODEDOWN     0x4004E320
#define DVK_IOC_GETPROXYINFO 0x8004E321
/*
 * PROPOSED, in no shipped DVK: get-proxy-status, call number 36, which a
 * shipped module refuses with ENOTTY (36 > DVK_IOC_MAXNR).  dvsd never sends
 * it to a real /dev/dvk; on a real kernel it reads /proc/dvs/proxies/info.
 */
#define DVK_IOC_GETPROXYSTS  0x8004E324

/* DVSD_CDEF_BEGIN */

typedef struct dvs_usr {
	char d_name[16];            /* MAXDVSNAME */
	int d_nr_dcs;
	int d_nr_nodes;
	int d_nr_procs;
	int d_nr_tasks;
	int d_nr_sysprocs;
	int d_max_copybuf;
	int d_max_copylen;
	unsigned long d_dbglvl;
	int d_version;              /* out: the kernel writes DVS_VERSION */
	unsigned long d_flags;
	int d_size_proc;            /* out */
} dvs_usr_t;

typedef struct dc_usr {
	int dc_dcid;
	int dc_flags;               /* out: DC_RUNNING or DC_FREE */
	int dc_nr_procs;
	int dc_nr_tasks;
	int dc_nr_sysprocs;
	int dc_nr_nodes;
	unsigned long dc_nodes;     /* out: bit n = node n */
	int dc_warn2proc;
	int dc_warnmsg;
	pid_t dc_pid;               /* out */
	char dc_name[16];           /* MAXDCNAME */
	cpu_set_t dc_cpumask;       /* all zero = all CPUs */
} dc_usr_t;

typedef struct node_usr {
	int n_nodeid;
	volatile unsigned long n_flags;
	int n_proxies;              /* pair id or NO_PROXIES */
	unsigned long n_dcs;        /* bit d = DC d */
	struct timespec n_stimestamp;
	struct timespec n_rtimestamp;
	unsigned long n_pxsent;
	unsigned long n_pxrcvd;
	char n_name[16];            /* MAXNODENAME */
} node_usr_t;

typedef struct proc_usr {
	int p_nr;                   /* slot; for a proxy, the pair id */
	int p_endpoint;
	int p_dcid;
	volatile unsigned long p_rts_flags;
	int p_lpid;                 /* PID in the initial namespace */
	int p_vpid;                 /* PID inside the DC's namespace */
	int p_nodeid;
	unsigned long p_nodemap;
	volatile unsigned long p_misc_flags;
	int p_getfrom;
	int p_sendto;
	int p_waitmigr;
	int p_waitunbind;
	int p_proxy;
	unsigned long p_lclsent;
	unsigned long p_rmtsent;
	unsigned long p_lclcopy;
	unsigned long p_rmtcopy;
	char p_name[16];            /* MAXPROCNAME */
	cpu_set_t p_cpumask;
} proc_usr_t;

typedef struct proxies_usr {
	unsigned int px_id;
	unsigned long px_flags;
	int px_maxbytes;
	int px_maxbcmds;
	char px_name[16];           /* MAXPROXYNAME */
} proxies_usr_t;

/* Kernel alarm timer embedded in priv_usr_t: opaque to user space. */
typedef struct dvs_timer {
	void *tmr_next;
	unsigned long tmr_expires;
	void *tmr_func;
	union {
		int ta_int;
		long ta_long;
		void *ta_ptr;
	} tmr_arg;
} dvs_timer_t;

typedef struct priv_usr {
	short priv_id;
	int priv_warn;              /* set-priv: in [-dc_nr_tasks, dc_nr_sysprocs) */
	int priv_level;             /* set-priv: USER_PRIV .. PROXY_PRIV */
	short priv_trap_mask;
	unsigned short priv_ipc_from[4];    /* NR_SYS_PROCS bits */
	unsigned short priv_ipc_to[4];      /* set-priv */
	unsigned short priv_dvk_allowed[3]; /* set-priv; NR_DVK_CALLS bits */
	dvs_timer_t priv_alarm_timer;
} priv_usr_t;

/* ioctl parameter blocks (dvk_ioparm.h of the new tree) */
struct dvk_parm_dvsinit { int nodeid; dvs_usr_t *dvs; };
struct dvk_parm_getdcinfo { int dcid; dc_usr_t *dc; };
struct dvk_parm_getnodeinfo { int nodeid; node_usr_t *node; };
struct dvk_parm_dcnode { int dcid; int nodeid; };
struct dvk_parm_pxconn { int pxid; int sts; };
struct dvk_parm_priv { int dcid; int ep; priv_usr_t *priv; };
struct dvk_parm_nodeup { char *name; int nodeid; int pxid; };
struct dvk_parm_proxyinfo { int pxid; proc_usr_t *spx; proc_usr_t *rpx; };
struct dvk_parm_bind { int cmd; int dcid; int pid; int ep; int nodeid; };
struct dvk_parm_pxbind { char *name; int pxid; int spid; int rpid; int maxbuf; };
struct dvk_parm_procinfo { int dcid; int nr; proc_usr_t *proc; };
struct dvk_parm_getproxysts { int pxid; proxies_usr_t *px; };

/*
 * The entry point: the libc ioctl on an open /dev/dvk.  Every request passes
 * one pointer (a parameter block or a struct) or one integer value.  The
 * return is >= 0 on success (init calls return the local node id); a kernel
 * error comes back as -1 with errno = -EDVS<code>.
 */
int ioctl(int fd, unsigned long request, ...);

/* The test double (native/fake_dvk.c) exports the same entry point. */
int fake_dvk_ioctl(int fd, unsigned long request, ...);
int fake_dvk_proxies_info(char *buf, int size);
void fake_dvk_reset(void);

/* DVSD_CDEF_END */

/*
 * The management calls dvsd makes, as C prototypes.  dvsd itself reaches
 * them through the ioctls above (cffi_backend.py); the prototypes state the
 * contract of each: >= 0 success, negative EDVS code on error.
 */
int dvk_dvs_init(int nodeid, dvs_usr_t *dvs);          /* -> local node id */
int dvk_dvs_end(void);
int dvk_getdvsinfo(dvs_usr_t *dvs);                    /* -> local node id */
int dvk_dc_init(dc_usr_t *dc);                         /* -> local node id */
int dvk_dc_end(int dcid);
int dvk_getdcinfo(int dcid, dc_usr_t *dc);
int dvk_add_node(int dcid, int nodeid);
int dvk_del_node(int dcid, int nodeid);
int dvk_getnodeinfo(int nodeid, node_usr_t *node);
int dvk_node_up(char *name, int nodeid, int pxid);
int dvk_node_down(int nodeid);
int dvk_proxies_bind(char *name, int pxid, int spid, int rpid, int maxcopybuf);
int dvk_proxies_unbind(int pxid);
int dvk_proxy_conn(int pxid, int status);
int dvk_getproxyinfo(int pxid, proc_usr_t *sender, proc_usr_t *receiver);
/* NEW (proposed): the pair record itself; see DVK_IOC_GETPROXYSTS. */
int dvk_getproxysts(int pxid, proxies_usr_t *pair);
int dvk_getprocinfo(int dcid, int slot, proc_usr_t *proc);
int dvk_getpriv(int dcid, int endpoint, priv_usr_t *priv);
int dvk_setpriv(int dcid, int endpoint, priv_usr_t *priv);
int dvk_lclbind(int dcid, int pid, int endpoint);      /* -> endpoint */
int dvk_migr_start(int dcid, int endpoint);
int dvk_migr_commit(int pid, int dcid, int endpoint, int new_node);
int dvk_migr_rollback(int dcid, int endpoint);

#endif /* DVSD_DVS_API_H */
