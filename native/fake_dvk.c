/*
 * fake_dvk.c - a test double of /dev/dvk for the cffi binding's tests.
 *
 * It stands at the lowest boundary dvsd has: the ioctl entry point.  The
 * tests compile it with gcc into a shared library and hand the cffi backend
 * fake_dvk_ioctl() in place of libc's ioctl() on /dev/dvk, so the binding's
 * struct marshalling and errno mapping run for real.  The state is a tiny
 * in-C copy of the DVK tables; the rules are the same the emulated kernel
 * (src/dvsd/kernel/emulated.py) keeps, and the contract suite holds the two
 * to the same answers.  Return convention, as Linux gives it for the real
 * module: >= 0 success, else -1 with errno = the positive EDVS number.
 *
 * fake_dvk_proxies_info() renders /proc/dvs/proxies/info in the kernel's
 * text format, which is where dvsd reads the proxy-pair status from on a
 * real kernel.  Not modelled: privileges, IPC, timers, PID namespaces.
 */
#include "dvs_api.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define SLOTS (NR_TASKS + NR_PROCS)
#define SIZE_PROC 1024

static int local_node = -1;
static dvs_usr_t dvs;
static int dvs_params_set;
static dc_usr_t dcs[NR_DCS];
static node_usr_t nodes[NR_NODES];
static proxies_usr_t pairs[NR_NODES];
static proc_usr_t sproxy[NR_NODES], rproxy[NR_NODES];
static proc_usr_t procs[NR_DCS][SLOTS];   /* index: slot + dc_nr_tasks */
static priv_usr_t privs[NR_DCS][SLOTS];

static void set_name(char *dst, const char *src)
{
	strncpy(dst, src, 15);
	dst[15] = '\0';
}

static int pid_exists(int pid)
{
	return pid > 0 && (kill(pid, 0) == 0 || errno == EPERM);
}

static void comm_of(int pid, char *dst)
{
	char path[64], buf[32] = "$noname";
	FILE *f;

	snprintf(path, sizeof path, "/proc/%d/comm", pid);
	f = fopen(path, "r");
	if (f) {
		if (fgets(buf, sizeof buf, f))
			buf[strcspn(buf, "\n")] = '\0';
		fclose(f);
	}
	set_name(dst, buf);
}

static void free_proc(proc_usr_t *p, int nr, int dcid)
{
	memset(p, 0, sizeof *p);
	p->p_nr = nr;
	p->p_endpoint = nr;
	p->p_dcid = dcid;
	p->p_rts_flags = SLOT_FREE;
	p->p_lpid = p->p_vpid = PROC_NO_PID;
	p->p_nodeid = LOCALNODE;
	p->p_getfrom = p->p_sendto = p->p_waitmigr = NONE_EP;
	p->p_waitunbind = p->p_proxy = NONE_EP;
	set_name(p->p_name, "$noname");
}

static void clear_dc(int d)
{
	int n;

	memset(&dcs[d], 0, sizeof dcs[d]);
	dcs[d].dc_dcid = d;
	dcs[d].dc_flags = DC_FREE;
	for (n = 0; n < NR_NODES; n++)
		nodes[n].n_dcs &= ~(1UL << d);
}

static void clear_node(int n)
{
	memset(&nodes[n], 0, sizeof nodes[n]);
	nodes[n].n_nodeid = n;
	nodes[n].n_proxies = NO_PROXIES;
	set_name(nodes[n].n_name, "NONAME");
}

static void clear_pair(int x)
{
	memset(&pairs[x], 0, sizeof pairs[x]);
	pairs[x].px_id = x;
	pairs[x].px_maxbytes = MAXCOPYBUF;
	set_name(pairs[x].px_name, "NONAME");
	free_proc(&sproxy[x], 0, PROXY_NO_DC);
	free_proc(&rproxy[x], 0, PROXY_NO_DC);
}

static void defaults(void)
{
	memset(&dvs, 0, sizeof dvs);
	set_name(dvs.d_name, "DVS_IPC");
	dvs.d_nr_dcs = NR_DCS;
	dvs.d_nr_nodes = NR_NODES;
	dvs.d_nr_procs = NR_PROCS;
	dvs.d_nr_tasks = NR_TASKS;
	dvs.d_nr_sysprocs = NR_SYS_PROCS;
	dvs.d_max_copybuf = MAXCOPYBUF;
	dvs.d_max_copylen = MAXCOPYLEN;
	dvs.d_version = DVS_VERSION;
	dvs.d_flags = DVK_IPC;
	dvs.d_size_proc = SIZE_PROC;
}

static void clear_tables(void)
{
	int i;

	for (i = 0; i < NR_DCS; i++)
		clear_dc(i);
	for (i = 0; i < NR_NODES; i++) {
		clear_node(i);
		clear_pair(i);
	}
}

/* Back to "module just loaded": no DVS, compiled-in parameters. */
void fake_dvk_reset(void)
{
	local_node = -1;
	dvs_params_set = 0;
	defaults();
	clear_tables();
}

/* ---- checks shared by several calls --------------------------------- */

static int dc_check(int dcid, int must_run)
{
	if (dcid < 0 || dcid >= dvs.d_nr_dcs)
		return EDVSBADDCID;
	if (must_run && dcs[dcid].dc_flags != DC_RUNNING)
		return EDVSDCNOTRUN;
	return 0;
}

static int remote_node_check(int n)
{
	if (n < 0 || n >= dvs.d_nr_nodes || n == local_node)
		return EDVSBADNODEID;
	return 0;
}

static int pair_check(int x, int must_bind)
{
	if (x < 0 || x >= dvs.d_nr_nodes)
		return EDVSPROXYID;
	if (must_bind && pairs[x].px_flags == PROXIES_FREE)
		return EDVSPROXYFREE;
	return 0;
}

static int ep_slot(int ep)
{
	return ((ep + NR_TASKS) % DVS_GEN_SIZE) - NR_TASKS;
}

static proc_usr_t *slot_of(int dcid, int slot)
{
	if (slot < -dcs[dcid].dc_nr_tasks || slot >= dcs[dcid].dc_nr_procs)
		return NULL;
	return &procs[dcid][slot + dcs[dcid].dc_nr_tasks];
}

/* a bound slot designated by an endpoint; range_err for a slot outside */
static int bound_slot(int dcid, int ep, int range_err, proc_usr_t **out)
{
	int rc = dc_check(dcid, 1);

	if (rc)
		return rc;
	*out = slot_of(dcid, ep_slot(ep));
	if (!*out)
		return range_err;
	if ((*out)->p_rts_flags & SLOT_FREE)
		return EDVSDSTDIED;
	return 0;
}

/* ---- the calls ------------------------------------------------------ */

static int do_dvs_init(struct dvk_parm_dvsinit *pb)
{
	dvs_usr_t *u = pb->dvs;
	unsigned long keep;

	if (local_node != -1)
		return EDVSDVSBUSY;
	if (pb->nodeid < 0 || pb->nodeid >= dvs.d_nr_nodes)
		return EDVSBADNODEID;
	keep = DVK_IPC;
	if (u) {
		if (u->d_nr_dcs < 1 || u->d_nr_dcs > NR_DCS ||
		    u->d_nr_nodes < 1 || u->d_nr_nodes > NR_NODES ||
		    u->d_nr_procs < 1 || u->d_nr_procs > NR_PROCS ||
		    u->d_nr_tasks < 1 || u->d_nr_tasks > NR_TASKS ||
		    u->d_nr_sysprocs < 1 || u->d_nr_sysprocs > NR_SYS_PROCS ||
		    u->d_nr_sysprocs <= u->d_nr_tasks ||
		    u->d_nr_sysprocs >= u->d_nr_procs + u->d_nr_tasks)
			return EDVSBADRANGE;
		if (u->d_max_copybuf > MAXCOPYBUF || u->d_max_copylen > MAXCOPYLEN ||
		    u->d_max_copylen < u->d_max_copybuf)
			return EDVSBADVALUE;
		dvs = *u;
		set_name(dvs.d_name, u->d_name);
		keep = u->d_flags & (DVK_IPC | DVK_IOCTL | DVK_USERMODE);
	}
	dvs.d_version = DVS_VERSION;
	dvs.d_size_proc = SIZE_PROC;
	dvs.d_flags = keep | DVK_IOCTL | DVK_INITIALIZED;
	clear_tables();
	local_node = pb->nodeid;
	snprintf(nodes[local_node].n_name, 16, "node%d", local_node);
	nodes[local_node].n_flags = NODE_ATTACHED | NODE_SCONNECTED;
	return local_node;
}

static int do_dc_init(dc_usr_t *u)
{
	int d, s, ncpu;
	cpu_set_t all;

	if (u->dc_dcid < 0 || u->dc_dcid >= dvs.d_nr_dcs ||
	    u->dc_nr_procs < 1 || u->dc_nr_procs > dvs.d_nr_procs ||
	    u->dc_nr_tasks < 0 || u->dc_nr_tasks > dvs.d_nr_tasks ||
	    u->dc_nr_sysprocs < 0 || u->dc_nr_sysprocs > dvs.d_nr_sysprocs ||
	    u->dc_nr_nodes < 1 || u->dc_nr_nodes > dvs.d_nr_nodes ||
	    u->dc_nr_sysprocs >= u->dc_nr_procs + u->dc_nr_tasks ||
	    u->dc_nr_sysprocs <= u->dc_nr_tasks)
		return EDVSBADRANGE;
	if (!memchr(u->dc_name, '\0', sizeof u->dc_name))
		return EDVSNAMESIZE;
	for (d = 0; d < NR_DCS; d++)
		if (dcs[d].dc_flags == DC_RUNNING &&
		    (d == u->dc_dcid || !strcmp(dcs[d].dc_name, u->dc_name)))
			return EDVSRSCBUSY;
	d = u->dc_dcid;
	dcs[d] = *u;
	dcs[d].dc_flags = DC_RUNNING;
	dcs[d].dc_nodes = 1UL << local_node;
	dcs[d].dc_pid = getpid();
	CPU_ZERO(&all);
	ncpu = (int)sysconf(_SC_NPROCESSORS_ONLN);
	for (s = 0; s < ncpu; s++)
		CPU_SET(s, &all);
	{
		cpu_set_t inter;

		CPU_AND(&inter, &u->dc_cpumask, &all);
		if (CPU_COUNT(&u->dc_cpumask) == 0 ||
		    !CPU_EQUAL(&inter, &u->dc_cpumask))
			dcs[d].dc_cpumask = all;
	}
	for (s = -u->dc_nr_tasks; s < u->dc_nr_procs; s++) {
		priv_usr_t *pv = &privs[d][s + u->dc_nr_tasks];

		free_proc(&procs[d][s + u->dc_nr_tasks], s, d);
		procs[d][s + u->dc_nr_tasks].p_cpumask = dcs[d].dc_cpumask;
		memset(pv, 0, sizeof *pv);
		pv->priv_id = s + u->dc_nr_tasks;
		pv->priv_warn = NONE_EP;
		pv->priv_level = s < 0 ? TASK_PRIV : USER_PRIV;
	}
	nodes[local_node].n_dcs |= 1UL << d;
	return local_node;
}

static int do_dcnode(struct dvk_parm_dcnode *pb, int add)
{
	int rc = dc_check(pb->dcid, 0);
	dc_usr_t *dc = &dcs[pb->dcid];

	if (rc || (rc = remote_node_check(pb->nodeid)))
		return rc;
	if (add && nodes[pb->nodeid].n_flags == NODE_FREE)
		return EDVSNODEFREE;
	if (dc->dc_flags != DC_RUNNING)
		return EDVSDCNOTRUN;
	if (add) {
		if (dc->dc_nodes & (1UL << pb->nodeid))
			return EDVSDCNODE;
		if (__builtin_popcountl(dc->dc_nodes) >= dc->dc_nr_nodes)
			return EDVSRSCBUSY;
		dc->dc_nodes |= 1UL << pb->nodeid;
		nodes[pb->nodeid].n_dcs |= 1UL << pb->dcid;
	} else {
		if (!(dc->dc_nodes & (1UL << pb->nodeid)))
			return EDVSDCNODE;
		dc->dc_nodes &= ~(1UL << pb->nodeid);
		nodes[pb->nodeid].n_dcs &= ~(1UL << pb->dcid);
	}
	return 0;
}

static int do_proxies_bind(struct dvk_parm_pxbind *pb)
{
	int rc = pair_check(pb->pxid, 0), x = pb->pxid;

	if (rc)
		return rc;
	if (pb->maxbuf > MAXCOPYBUF)
		return EDVS2BIG;
	if (!pid_exists(pb->spid) || !pid_exists(pb->rpid))
		return EDVSBADPID;
	if (pairs[x].px_flags != PROXIES_FREE)
		return EDVSRSCBUSY;
	pairs[x].px_flags = PROXIES_INUSE;
	set_name(pairs[x].px_name, pb->name);
	pairs[x].px_maxbytes = pb->maxbuf;
	pairs[x].px_maxbcmds = 0;
	free_proc(&sproxy[x], x, PROXY_NO_DC);
	free_proc(&rproxy[x], x, PROXY_NO_DC);
	sproxy[x].p_endpoint = rproxy[x].p_endpoint = NONE_EP;
	sproxy[x].p_rts_flags = rproxy[x].p_rts_flags = 0;
	sproxy[x].p_lpid = sproxy[x].p_vpid = pb->spid;
	rproxy[x].p_lpid = rproxy[x].p_vpid = pb->rpid;
	sproxy[x].p_nodeid = rproxy[x].p_nodeid = local_node;
	sproxy[x].p_misc_flags = rproxy[x].p_misc_flags = MIS_PROXY;
	set_name(sproxy[x].p_name, pb->name);
	set_name(rproxy[x].p_name, pb->name);
	return 0;
}

static int do_proxy_conn(struct dvk_parm_pxconn *pb)
{
	int rc = pair_check(pb->pxid, 1), x = pb->pxid, n;
	int sender, connect;
	proc_usr_t *p;
	unsigned long pbit, nbit;

	if (rc)
		return rc;
	if (pb->sts < CONNECT_SPROXY || pb->sts > DISCONNECT_RPROXY)
		return EDVSBADVALUE;
	sender = pb->sts == CONNECT_SPROXY || pb->sts == DISCONNECT_SPROXY;
	connect = pb->sts == CONNECT_SPROXY || pb->sts == CONNECT_RPROXY;
	p = sender ? &sproxy[x] : &rproxy[x];
	pbit = sender ? PROXIES_SCONNECTED : PROXIES_RCONNECTED;
	nbit = sender ? NODE_SCONNECTED : NODE_RCONNECTED;
	if (connect) {
		pairs[x].px_flags |= pbit;
		p->p_misc_flags |= MIS_CONNECTED;
	} else {
		pairs[x].px_flags &= ~pbit;
		p->p_misc_flags &= ~MIS_CONNECTED;
	}
	for (n = 0; n < NR_NODES; n++)
		if (p->p_nodemap & (1UL << n)) {
			if (connect)
				nodes[n].n_flags |= nbit;
			else
				nodes[n].n_flags &= ~nbit;
		}
	return 0;
}

static int do_node_up(struct dvk_parm_nodeup *pb)
{
	int rc = remote_node_check(pb->nodeid), n = pb->nodeid, x = pb->pxid;
	unsigned long flags = NODE_ATTACHED;

	if (rc || (rc = pair_check(x, 1)))
		return rc;
	if (pairs[x].px_flags & PROXIES_SCONNECTED)
		flags |= NODE_SCONNECTED;
	if (pairs[x].px_flags & PROXIES_RCONNECTED)
		flags |= NODE_RCONNECTED;
	sproxy[x].p_nodemap |= 1UL << n;
	rproxy[x].p_nodemap |= 1UL << n;
	nodes[n].n_flags = flags;
	nodes[n].n_proxies = x;
	set_name(nodes[n].n_name, pb->name);
	return 0;
}

/* What node-down is meant to do (the shipped kernel's is broken, 4.11). */
static int do_node_down(int n)
{
	int rc = remote_node_check(n), d, x;

	if (rc)
		return rc;
	if (nodes[n].n_flags == NODE_FREE)
		return EDVSNODEFREE;
	x = nodes[n].n_proxies;
	if (x != NO_PROXIES) {
		sproxy[x].p_nodemap &= ~(1UL << n);
		rproxy[x].p_nodemap &= ~(1UL << n);
	}
	for (d = 0; d < NR_DCS; d++)
		dcs[d].dc_nodes &= ~(1UL << n);
	clear_node(n);
	return 0;
}

static int do_bind(struct dvk_parm_bind *pb)
{
	int rc = dc_check(pb->dcid, 1);
	proc_usr_t *p;

	if (rc)
		return rc;
	if (pb->cmd != LCL_BIND)	/* the only type dvsd sends */
		return EDVSBINDTYPE;
	p = slot_of(pb->dcid, ep_slot(pb->ep));
	if (!p)
		return EDVSBADPROC;
	if (pb->nodeid != LOCALNODE)
		return EDVSBADNODEID;
	if (!pid_exists(pb->pid))
		return EDVSBADPID;
	if (!(p->p_rts_flags & SLOT_FREE))
		return EDVSSLOTUSED;
	p->p_endpoint = pb->ep;
	p->p_rts_flags = 0;
	p->p_lpid = p->p_vpid = pb->pid;
	p->p_nodeid = local_node;
	p->p_nodemap = 1UL << local_node;
	p->p_misc_flags = MIS_GRPLEADER;
	comm_of(pb->pid, p->p_name);
	return pb->ep;
}

static int do_migrate(struct dvk_parm_bind *pb)
{
	proc_usr_t *p;
	int rc, new_node = pb->nodeid;
	unsigned long flags;

	if (pb->cmd < MIGR_START || pb->cmd > MIGR_ROLLBACK)
		return EDVSNOSYS;
	rc = bound_slot(pb->dcid, pb->ep, EDVSRANGE, &p);
	if (rc)
		return rc;
	if (p->p_endpoint != pb->ep)
		return EDVSBADPROC;
	if (pb->cmd == MIGR_START) {
		p->p_rts_flags |= MIGRATING;
		return 0;
	}
	if (pb->cmd == MIGR_ROLLBACK) {
		p->p_rts_flags &= ~MIGRATING;
		return 0;
	}
	if (new_node < 0 || new_node >= dvs.d_nr_nodes ||
	    (new_node != local_node && nodes[new_node].n_flags == NODE_FREE))
		return EDVSNOPROXY;
	if (!(dcs[pb->dcid].dc_nodes & (1UL << new_node)))
		return EDVSDCNODE;
	flags = p->p_rts_flags & ~MIGRATING;
	if (new_node == local_node) {
		if (!(flags & REMOTE))
			return EDVSLCLPROC;
		if (!pid_exists(pb->pid))
			return EDVSBADPID;
		p->p_rts_flags = flags & ~REMOTE;
		p->p_lpid = p->p_vpid = pb->pid;
		p->p_nodeid = local_node;
		p->p_nodemap = 1UL << local_node;
		p->p_misc_flags = MIS_GRPLEADER;
		comm_of(pb->pid, p->p_name);
	} else if (!(flags & REMOTE)) {
		p->p_rts_flags = flags | REMOTE;
		p->p_lpid = p->p_vpid = PROC_NO_PID;
		p->p_nodeid = new_node;
		p->p_nodemap = 1UL << new_node;
		p->p_misc_flags = 0;
	} else {
		p->p_rts_flags = flags;
		p->p_nodeid = new_node;
		p->p_nodemap = 1UL << new_node;
	}
	return 0;
}

static int do_priv(struct dvk_parm_priv *pb, int set)
{
	proc_usr_t *p;
	priv_usr_t *pv;
	int rc = bound_slot(pb->dcid, pb->ep, EDVSBADPROC, &p);
	dc_usr_t *dc = &dcs[pb->dcid];

	if (rc)
		return rc;
	if (!pb->priv)
		return EDVSFAULT;
	pv = &privs[pb->dcid][ep_slot(pb->ep) + dc->dc_nr_tasks];
	if (!set) {
		*pb->priv = *pv;
		return 0;
	}
	if (pb->priv->priv_warn < -dc->dc_nr_tasks ||
	    pb->priv->priv_warn >= dc->dc_nr_sysprocs)
		return EDVSBADPROC;
	if (pb->priv->priv_level < USER_PRIV || pb->priv->priv_level > PROXY_PRIV)
		return EDVSBADVALUE;
	pv->priv_warn = pb->priv->priv_warn;
	pv->priv_level = pb->priv->priv_level;
	memcpy(pv->priv_ipc_to, pb->priv->priv_ipc_to, sizeof pv->priv_ipc_to);
	memcpy(pv->priv_dvk_allowed, pb->priv->priv_dvk_allowed,
	       sizeof pv->priv_dvk_allowed);
	return 0;
}

static int dispatch(unsigned long request, unsigned long arg)
{
	int rc;

	if ((request >> 8 & 0xff) != DVK_IOC_MAGIC || (request & 0xff) > 35)
		return EDVSNOTTY;
	if (request == DVK_IOC_DVSINIT)
		return arg ? do_dvs_init((struct dvk_parm_dvsinit *)arg) : EDVSFAULT;
	if (local_node == -1) {
		/* get-dvs-info answers -1 (DVS_NO_INIT) before dvs-init */
		if (request == DVK_IOC_GETDVSINFO)
			return EDVSPERM;
		return EDVSDVSINIT;
	}
	if (arg == 0 && request != DVK_IOC_DVSEND && request != DVK_IOC_DCEND &&
	    request != DVK_IOC_NODEDOWN && request != DVK_IOC_PROXYUNBIND)
		return EDVSFAULT;
	switch (request) {
	case DVK_IOC_DVSEND:
		clear_tables();
		dvs.d_flags &= ~DVK_INITIALIZED;
		local_node = -1;
		return 0;
	case DVK_IOC_GETDVSINFO:
		*(dvs_usr_t *)arg = dvs;
		return local_node;
	case DVK_IOC_DCINIT:
		return do_dc_init((dc_usr_t *)arg);
	case DVK_IOC_DCEND:
		rc = dc_check((int)arg, 1);
		if (!rc)
			clear_dc((int)arg);
		return rc;
	case DVK_IOC_GETDCINFO: {
		struct dvk_parm_getdcinfo *pb = (void *)arg;

		rc = dc_check(pb->dcid, 0);
		if (!rc)
			*pb->dc = dcs[pb->dcid];
		return rc;
	}
	case DVK_IOC_ADDNODE:
		return do_dcnode((struct dvk_parm_dcnode *)arg, 1);
	case DVK_IOC_DELNODE:
		return do_dcnode((struct dvk_parm_dcnode *)arg, 0);
	case DVK_IOC_GETNODEINFO: {
		struct dvk_parm_getnodeinfo *pb = (void *)arg;
		int n = pb->nodeid == LOCALNODE ? local_node : pb->nodeid;

		if (n < 0 || n >= dvs.d_nr_nodes)
			return EDVSBADNODEID;
		*pb->node = nodes[n];
		return 0;
	}
	case DVK_IOC_PROXYBIND:
		return do_proxies_bind((struct dvk_parm_pxbind *)arg);
	case DVK_IOC_PROXYUNBIND: {
		int x = (int)arg, n;

		rc = pair_check(x, 1);
		if (rc)
			return rc;
		for (n = 0; n < NR_NODES; n++)
			if (sproxy[x].p_nodemap & (1UL << n))
				nodes[n].n_flags &= ~(NODE_SCONNECTED | NODE_RCONNECTED);
		clear_pair(x);
		return 0;
	}
	case DVK_IOC_PROXYCONN:
		return do_proxy_conn((struct dvk_parm_pxconn *)arg);
	case DVK_IOC_NODEUP:
		return do_node_up((struct dvk_parm_nodeup *)arg);
	case DVK_IOC_NODEDOWN:
		return do_node_down((int)arg);
	case DVK_IOC_GETPROXYINFO: {
		struct dvk_parm_proxyinfo *pb = (void *)arg;

		rc = pair_check(pb->pxid, 1);
		if (rc)
			return rc;
		*pb->spx = sproxy[pb->pxid];
		*pb->rpx = rproxy[pb->pxid];
		return 0;
	}
	case DVK_IOC_GETPROCINFO: {
		struct dvk_parm_procinfo *pb = (void *)arg;
		proc_usr_t *p;

		rc = dc_check(pb->dcid, 1);
		if (rc)
			return rc;
		p = slot_of(pb->dcid, pb->nr);
		if (!p)
			return EDVSBADPROC;
		*pb->proc = *p;
		return 0;
	}
	case DVK_IOC_GETPRIV:
		return do_priv((struct dvk_parm_priv *)arg, 0);
	case DVK_IOC_SETPRIV:
		return do_priv((struct dvk_parm_priv *)arg, 1);
	case DVK_IOC_BIND:
		return do_bind((struct dvk_parm_bind *)arg);
	case DVK_IOC_MIGRATE:
		return do_migrate((struct dvk_parm_bind *)arg);
	default:
		return EDVSNOTTY;
	}
}

int fake_dvk_ioctl(int fd, unsigned long request, ...)
{
	va_list ap;
	unsigned long arg;
	int rc;

	(void)fd;
	va_start(ap, request);
	arg = va_arg(ap, unsigned long);
	va_end(ap);
	if (dvs.d_nr_dcs == 0)	/* first call: as after module load */
		fake_dvk_reset();
	rc = dispatch(request, arg);
	if (rc < 0 && rc >= -4095) {
		errno = -rc;
		return -1;
	}
	return rc;
}

/* /proc/dvs/proxies/info as the kernel prints it; returns the length. */
int fake_dvk_proxies_info(char *buf, int size)
{
	int x, b, len;
	char map[33];

	len = snprintf(buf, size, "Proxies Flags Sender Receiver --Proxies_Name- "
		       "10987654321098765432109876543210 \n");
	for (x = 0; x < dvs.d_nr_nodes && len < size; x++) {
		if (pairs[x].px_flags == PROXIES_FREE)
			continue;
		for (b = 0; b < 32; b++)
			map[b] = (sproxy[x].p_nodemap >> (31 - b)) & 1 ? 'X' : '-';
		map[32] = '\0';
		len += snprintf(buf + len, size - len, "%7d %5lX %6d %8d %15s %s\n",
				pairs[x].px_id, pairs[x].px_flags, sproxy[x].p_lpid,
				rproxy[x].p_lpid, pairs[x].px_name, map);
	}
	return len;
}
