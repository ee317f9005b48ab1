/* sysv_ipc: System V shared memory, semaphores and message queues across checkpoint/restore.
 *  A: keyed segment of 5 pages + 100 bytes, mode 0640, pages 0 and 3 written (1, 2, 4 holes),
 *     attached read-write by the root and a child (which inherits every attachment).
 *  B: private segment of 2 pages, written, attached read-only by the root.
 *  C: private segment, attached by the root, then removed (IPC_RMID: SHM_DEST, key 0).
 *  D: keyed segment attached by nobody, owner changed to 1234:5678 (creator stays root).
 *  S: keyed set of 3 semaphores {1, 0, 42}, owner 4321.
 *  Q: keyed queue, byte limit lowered to 8000, messages (5 "alpha") (1 300 bytes) (5 "")
 *     (9 1000 bytes), in this order.
 *  R: private queue created by a helper running as 1001:1001 (creator ids 1001), mode 0666,
 *     one message sent by the root.
 * After restore: every id is the same (also through the keys), keys, sizes, modes, owners,
 * creators, attachment counts; contents, holes (mincore), attach addresses and protections
 * (maps); the child writes into A and the root sees it; semaphores hold their values and
 * work; messages come back by type and in order, then ENOMSG. Everything is removed at the end. */
#include "wl.h"
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>

#define PAGE 4096
#define A_SIZE (5 * PAGE + 100)

union semun_ {
    int val;
    struct semid_ds *buf;
    unsigned short *array;
};

struct msg_ {
    long type;
    char text[2048];
};

static int ida, idb, idc, idd, ids, idq, idr;
static key_t keya, keyd, keys, keyq;
static char *a, *b, *c;

static void fill_page(char *p, int seed, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (char)(seed * 31 + i * 7 + (i >> 9));
}

static void check_page(const char *p, int seed, size_t n, const char *what)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != (char)(seed * 31 + i * 7 + (i >> 9)))
            wl_fail("%s: byte %zu is 0x%02x, expected 0x%02x", what, i, (unsigned char)p[i],
                    (unsigned char)(seed * 31 + i * 7 + (i >> 9)));
}

static void check_shm(int id, key_t key, size_t size, unsigned mode, uid_t uid, gid_t gid, uid_t cuid, gid_t cgid,
                      unsigned long nattch, const char *what)
{
    struct shmid_ds ds;
    WL_CHECK(shmctl(id, IPC_STAT, &ds) == 0, "%s: shmctl(IPC_STAT, %d)", what, id);
    if (ds.shm_perm.__key != key || ds.shm_segsz != size || (ds.shm_perm.mode & 07777) != mode)
        wl_fail("%s: key %#x size %zu mode %04o, expected key %#x size %zu mode %04o", what, ds.shm_perm.__key,
                (size_t)ds.shm_segsz, ds.shm_perm.mode & 07777, key, size, mode);
    if (ds.shm_perm.uid != uid || ds.shm_perm.gid != gid || ds.shm_perm.cuid != cuid || ds.shm_perm.cgid != cgid)
        wl_fail("%s: owner %u:%u creator %u:%u, expected %u:%u and %u:%u", what, ds.shm_perm.uid, ds.shm_perm.gid,
                ds.shm_perm.cuid, ds.shm_perm.cgid, uid, gid, cuid, cgid);
    if (ds.shm_nattch != nattch)
        wl_fail("%s: %lu attachments, expected %lu", what, (unsigned long)ds.shm_nattch, nattch);
}

static void check_area(const void *addr, size_t len, const char *perms, const char *what)
{
    char desc[512];
    if (wl_maps_describe(addr, len, desc, sizeof desc) != 0)
        wl_fail("%s: no mapping at %p", what, addr);
    if (strncmp(desc, perms, 4) != 0)
        wl_fail("%s: mapping at %p is \"%s\", expected permissions %s", what, addr, desc, perms);
}

static void child_main(void)
{
    wl_is_child = 1;
    wl_wait_term();
    check_page(a, 1, PAGE, "child: A page 0");
    check_page(a + 3 * PAGE, 4, PAGE, "child: A page 3");
    check_area(a, 6 * PAGE, "rw-s", "child: A");
    a[3 * PAGE + 17] = 'Z';
    wl_pass();
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    key_t base = (key_t)(0x5e000000 | ((getpid() & 0xffff) << 4));
    keya = base + 1, keyd = base + 2, keys = base + 3, keyq = base + 4;
    uid_t me = getuid();
    gid_t mg = getgid();

    ida = shmget(keya, A_SIZE, IPC_CREAT | IPC_EXCL | 0640);
    WL_CHECK(ida >= 0, "shmget A");
    a = shmat(ida, NULL, 0);
    WL_CHECK(a != (void *)-1, "shmat A");
    fill_page(a, 1, PAGE);
    fill_page(a + 3 * PAGE, 4, PAGE);

    idb = shmget(IPC_PRIVATE, 2 * PAGE, IPC_CREAT | 0600);
    WL_CHECK(idb >= 0, "shmget B");
    char *w = shmat(idb, NULL, 0);
    WL_CHECK(w != (void *)-1, "shmat B rw");
    fill_page(w, 7, 2 * PAGE);
    WL_CHECK(shmdt(w) == 0, "shmdt B");
    b = shmat(idb, NULL, SHM_RDONLY);
    WL_CHECK(b != (void *)-1, "shmat B ro");

    idc = shmget(IPC_PRIVATE, PAGE, IPC_CREAT | 0600);
    WL_CHECK(idc >= 0, "shmget C");
    c = shmat(idc, NULL, 0);
    WL_CHECK(c != (void *)-1, "shmat C");
    fill_page(c, 9, PAGE);
    WL_CHECK(shmctl(idc, IPC_RMID, NULL) == 0, "IPC_RMID C");

    idd = shmget(keyd, 3 * PAGE, IPC_CREAT | IPC_EXCL | 0604);
    WL_CHECK(idd >= 0, "shmget D");
    w = shmat(idd, NULL, 0);
    WL_CHECK(w != (void *)-1, "shmat D");
    fill_page(w + PAGE, 11, PAGE);
    WL_CHECK(shmdt(w) == 0, "shmdt D");
    struct shmid_ds ds;
    WL_CHECK(shmctl(idd, IPC_STAT, &ds) == 0, "stat D");
    ds.shm_perm.uid = 1234;
    ds.shm_perm.gid = 5678;
    WL_CHECK(shmctl(idd, IPC_SET, &ds) == 0, "IPC_SET D");

    ids = semget(keys, 3, IPC_CREAT | IPC_EXCL | 0600);
    WL_CHECK(ids >= 0, "semget");
    unsigned short vals[3] = { 1, 0, 42 };
    WL_CHECK(semctl(ids, 0, SETALL, (union semun_){ .array = vals }) == 0, "SETALL");
    struct semid_ds sds;
    WL_CHECK(semctl(ids, 0, IPC_STAT, (union semun_){ .buf = &sds }) == 0, "sem IPC_STAT");
    sds.sem_perm.uid = 4321;
    WL_CHECK(semctl(ids, 0, IPC_SET, (union semun_){ .buf = &sds }) == 0, "sem IPC_SET");

    idq = msgget(keyq, IPC_CREAT | IPC_EXCL | 0620);
    WL_CHECK(idq >= 0, "msgget");
    struct msqid_ds mds;
    WL_CHECK(msgctl(idq, IPC_STAT, &mds) == 0, "msg IPC_STAT");
    mds.msg_qbytes = 8000;
    WL_CHECK(msgctl(idq, IPC_SET, &mds) == 0, "msg IPC_SET");
    static struct msg_ m;
    m.type = 5;
    memcpy(m.text, "alpha", 5);
    WL_CHECK(msgsnd(idq, &m, 5, 0) == 0, "msgsnd 1");
    m.type = 1;
    fill_page(m.text, 3, 300);
    WL_CHECK(msgsnd(idq, &m, 300, 0) == 0, "msgsnd 2");
    m.type = 5;
    WL_CHECK(msgsnd(idq, &m, 0, 0) == 0, "msgsnd 3");
    m.type = 9;
    fill_page(m.text, 8, 1000);
    WL_CHECK(msgsnd(idq, &m, 1000, 0) == 0, "msgsnd 4");

    /* R: created by a helper with other effective ids. */
    int pfd[2];
    WL_CHECK(pipe(pfd) == 0, "pipe");
    pid_t h = fork();
    WL_CHECK(h >= 0, "fork helper");
    if (h == 0) {
        wl_is_child = 1;
        WL_CHECK(setresgid(1001, 1001, 1001) == 0 && setresuid(1001, 1001, 1001) == 0, "helper: drop ids");
        int id = msgget(IPC_PRIVATE, IPC_CREAT | 0666);
        WL_CHECK(id >= 0, "helper: msgget");
        WL_CHECK(write(pfd[1], &id, sizeof id) == sizeof id, "helper: write id");
        wl_pass();
    }
    WL_CHECK(read(pfd[0], &idr, sizeof idr) == sizeof idr, "read helper's queue id");
    wl_expect_child_pass(h, "queue helper");
    close(pfd[0]);
    close(pfd[1]);
    m.type = 2;
    memcpy(m.text, "for R", 5);
    WL_CHECK(msgsnd(idr, &m, 5, 0) == 0, "msgsnd R");

    pid_t child = fork();
    WL_CHECK(child >= 0, "fork");
    if (child == 0)
        child_main();

    wl_ready();
    wl_wait_term();

    /* Ids through the keys. */
    if (shmget(keya, 0, 0) != ida || shmget(keyd, 0, 0) != idd || semget(keys, 0, 0) != ids ||
        msgget(keyq, 0) != idq)
        wl_fail("ids by key: shm %d/%d %d/%d sem %d/%d msg %d/%d", shmget(keya, 0, 0), ida, shmget(keyd, 0, 0), idd,
                semget(keys, 0, 0), ids, msgget(keyq, 0), idq);
    /* Segments. */
    check_shm(ida, keya, A_SIZE, 0640, me, mg, me, mg, 2, "A");
    check_shm(idb, IPC_PRIVATE, 2 * PAGE, 0600, me, mg, me, mg, 2, "B");
    check_shm(idc, IPC_PRIVATE, PAGE, 0600 | SHM_DEST, me, mg, me, mg, 2, "C");
    check_shm(idd, keyd, 3 * PAGE, 0604, 1234, 5678, me, mg, 0, "D");
    check_page(a, 1, PAGE, "A page 0");
    check_page(a + 3 * PAGE, 4, PAGE, "A page 3");
    check_page(b, 7, 2 * PAGE, "B");
    check_page(c, 9, PAGE, "C");
    unsigned char vec[6];
    WL_CHECK(mincore(a, 6 * PAGE, vec) == 0, "mincore A");
    for (int i = 0; i < 6; i++)
        if ((vec[i] & 1) != (i == 0 || i == 3))
            wl_fail("A page %d is %s, expected %s", i, vec[i] & 1 ? "resident" : "a hole",
                    i == 0 || i == 3 ? "resident" : "a hole");
    check_area(a, 6 * PAGE, "rw-s", "A");
    check_area(b, 2 * PAGE, "r--s", "B");
    check_area(c, PAGE, "rw-s", "C");
    char *d = shmat(idd, NULL, SHM_RDONLY);
    WL_CHECK(d != (void *)-1, "shmat D after restore");
    check_page(d + PAGE, 11, PAGE, "D page 1");
    for (int i = 0; i < PAGE; i++)
        if (d[i] || d[2 * PAGE + i])
            wl_fail("D: byte %d of page 0 or 2 is not zero", i);
    WL_CHECK(shmdt(d) == 0, "shmdt D");
    /* Shared with the child. */
    WL_CHECK(kill(child, SIGTERM) == 0, "signal child");
    wl_expect_child_pass(child, "shm child");
    if (a[3 * PAGE + 17] != 'Z')
        wl_fail("the child's write into A is not seen by the root: not the same segment");
    a[3 * PAGE + 17] = (char)(4 * 31 + (3 * 0 + 17) * 7);

    /* Semaphores. */
    unsigned short got[3] = { 9, 9, 9 };
    WL_CHECK(semctl(ids, 0, GETALL, (union semun_){ .array = got }) == 0, "GETALL");
    if (got[0] != 1 || got[1] != 0 || got[2] != 42)
        wl_fail("semaphores %u %u %u, expected 1 0 42", got[0], got[1], got[2]);
    WL_CHECK(semctl(ids, 0, IPC_STAT, (union semun_){ .buf = &sds }) == 0, "sem IPC_STAT after");
    if (sds.sem_nsems != 3 || (sds.sem_perm.mode & 0777) != 0600 || sds.sem_perm.uid != 4321 ||
        sds.sem_perm.cuid != me)
        wl_fail("semaphore set: %lu sems mode %o owner %u creator %u", (unsigned long)sds.sem_nsems,
                sds.sem_perm.mode & 0777, sds.sem_perm.uid, sds.sem_perm.cuid);
    struct sembuf op = { .sem_num = 0, .sem_op = -1, .sem_flg = IPC_NOWAIT };
    WL_CHECK(semop(ids, &op, 1) == 0, "semop -1 on semaphore 0");
    if (semop(ids, &op, 1) != -1 || errno != EAGAIN)
        wl_fail("semaphore 0 could be decremented twice (value was not 1)");

    /* Queues. */
    WL_CHECK(msgctl(idq, IPC_STAT, &mds) == 0, "msg IPC_STAT after");
    if (mds.msg_qnum != 4 || mds.msg_qbytes != 8000 || mds.__msg_cbytes != 1305 || (mds.msg_perm.mode & 0777) != 0620)
        wl_fail("queue Q: %lu messages %lu bytes limit %lu mode %o, expected 4, 1305, 8000, 620",
                (unsigned long)mds.msg_qnum, (unsigned long)mds.__msg_cbytes, (unsigned long)mds.msg_qbytes,
                mds.msg_perm.mode & 0777);
    ssize_t n = msgrcv(idq, &m, sizeof m.text, 1, IPC_NOWAIT);
    WL_CHECK(n == 300, "msgrcv type 1: %zd bytes", n);
    check_page(m.text, 3, 300, "message of type 1");
    long types[3] = { 5, 5, 9 };
    ssize_t lens[3] = { 5, 0, 1000 };
    for (int i = 0; i < 3; i++) {
        n = msgrcv(idq, &m, sizeof m.text, 0, IPC_NOWAIT);
        if (n != lens[i] || m.type != types[i])
            wl_fail("message %d: type %ld, %zd bytes, expected type %ld, %zd bytes", i, m.type, n, types[i], lens[i]);
    }
    check_page(m.text, 8, 1000, "message of type 9");
    if (msgrcv(idq, &m, sizeof m.text, 0, IPC_NOWAIT) != -1 || errno != ENOMSG)
        wl_fail("queue Q has more messages than were sent");
    WL_CHECK(msgctl(idr, IPC_STAT, &mds) == 0, "R IPC_STAT");
    if (mds.msg_perm.cuid != 1001 || mds.msg_perm.cgid != 1001 || mds.msg_perm.uid != 1001 ||
        (mds.msg_perm.mode & 0777) != 0666 || mds.msg_perm.__key != IPC_PRIVATE)
        wl_fail("queue R: owner %u:%u creator %u:%u mode %o key %#x, expected 1001 everywhere, 0666, private",
                mds.msg_perm.uid, mds.msg_perm.gid, mds.msg_perm.cuid, mds.msg_perm.cgid, mds.msg_perm.mode & 0777,
                mds.msg_perm.__key);
    n = msgrcv(idr, &m, sizeof m.text, 0, IPC_NOWAIT);
    if (n != 5 || m.type != 2 || memcmp(m.text, "for R", 5) != 0)
        wl_fail("queue R: message of %zd bytes, type %ld", n, m.type);

    shmctl(ida, IPC_RMID, NULL);
    shmctl(idb, IPC_RMID, NULL);
    shmctl(idd, IPC_RMID, NULL);
    semctl(ids, 0, IPC_RMID);
    msgctl(idq, IPC_RMID, NULL);
    msgctl(idr, IPC_RMID, NULL);
    wl_pass();
}
