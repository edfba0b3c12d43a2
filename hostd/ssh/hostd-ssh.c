/*
 * hostd-ssh: the only program sshd starts for hostd, in two roles.
 *
 *   hostd-ssh -c 'key 42'                       login shell of the git and hg accounts
 *   hostd-ssh keys SOCKET FINGERPRINT           AuthorizedKeysCommand (%f)
 *
 * As the login shell it hands the session to hostd's SSH gateway (a
 * long-running Python process, hostd/ssh/gateway.py) over the unix socket
 * named by HOSTD_SSH_SOCKET (sshd's SetEnv): one message carrying the key
 * id of the forced command, SSH_ORIGINAL_COMMAND, GIT_PROTOCOL and
 * SSH_CONNECTION, with the session's stdin, stdout and stderr attached
 * (SCM_RIGHTS). The gateway decides, runs git on those descriptors (git
 * talks to sshd directly, as under git-shell) and answers one byte, the
 * exit status, which this program exits with. No shell ever sees the
 * client's command, and no interpreter starts per connection.
 *
 * As the AuthorizedKeysCommand it asks the gateway for the authorized_keys
 * line of one fingerprint and prints it (nothing for an unknown key). The
 * client's address goes with it, for the throttle: sshd 9.2 has no token for
 * it (%C came in 9.4), so it is read from the connection's socket in the
 * sshd process that started this one (pidfd_getfd, Linux 5.6; this runs as
 * root, AuthorizedKeysCommandUser), and is empty where that fails.
 *
 * Wire format (gateway side: hostd/ssh/wire.py): a 4-byte big-endian length,
 * then that many bytes: a kind ("S" session, "K" key) and NUL-terminated
 * fields.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#define MAX_MESSAGE 16384
#define UNAVAILABLE "hostd: the SSH service is unavailable; try again shortly\n"

static void say(const char *line) {
    ssize_t ignored = write(2, line, strlen(line));
    (void)ignored;
}

static int connect_to(const char *path) {
    struct sockaddr_un address;
    if (path == NULL || strlen(path) >= sizeof(address.sun_path))
        return -1;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    memset(&address, 0, sizeof(address));
    address.sun_family = AF_UNIX;
    strcpy(address.sun_path, path);
    if (connect(fd, (struct sockaddr *)&address, sizeof(address)) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Append a NUL-terminated field; 0 when it does not fit. */
static int field(char *buffer, size_t *used, const char *value) {
    size_t length = strlen(value ? value : "") + 1;
    if (*used + length > MAX_MESSAGE)
        return 0;
    memcpy(buffer + *used, value ? value : "", length);
    *used += length;
    return 1;
}

/* Send the message, with fds[0..nfds) attached. */
static int send_message(int sock, char *payload, size_t used, const int *fds, int nfds) {
    unsigned char header[4] = {used >> 24, used >> 16, used >> 8, used};
    struct iovec parts[2] = {{header, 4}, {payload, used}};
    struct msghdr message;
    char control[CMSG_SPACE(3 * sizeof(int))];
    memset(&message, 0, sizeof(message));
    memset(control, 0, sizeof(control));
    message.msg_iov = parts;
    message.msg_iovlen = 2;
    if (nfds > 0) {
        message.msg_control = control;
        message.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
        struct cmsghdr *cmsg = CMSG_FIRSTHDR(&message);
        cmsg->cmsg_level = SOL_SOCKET;
        cmsg->cmsg_type = SCM_RIGHTS;
        cmsg->cmsg_len = CMSG_LEN(nfds * sizeof(int));
        memcpy(CMSG_DATA(cmsg), fds, nfds * sizeof(int));
    }
    ssize_t sent = sendmsg(sock, &message, MSG_NOSIGNAL);
    if (sent < 0)
        return 0;
    /* The descriptors travel with the first byte; finish the rest plainly. */
    size_t total = (size_t)sent, want = used + 4;
    while (total < want) {
        const char *from = total < 4 ? (const char *)header + total : payload + (total - 4);
        size_t left = total < 4 ? 4 - total : want - total;
        ssize_t more = send(sock, from, left, MSG_NOSIGNAL);
        if (more < 0 && errno == EINTR)
            continue;
        if (more <= 0)
            return 0;
        total += (size_t)more;
    }
    return 1;
}

static int session(const char *forced) {
    static char payload[MAX_MESSAGE];
    size_t used = 0;
    const char *original = getenv("SSH_ORIGINAL_COMMAND");
    if (!field(payload, &used, "S") || !field(payload, &used, forced) || !field(payload, &used, original) ||
        !field(payload, &used, getenv("GIT_PROTOCOL")) || !field(payload, &used, getenv("SSH_CONNECTION"))) {
        say("hostd: command too long\n");
        return 1;
    }
    int sock = connect_to(getenv("HOSTD_SSH_SOCKET"));
    if (sock < 0) {
        say(UNAVAILABLE);
        return 1;
    }
    int fds[3] = {0, 1, 2};
    if (!send_message(sock, payload, used, fds, 3)) {
        say(UNAVAILABLE);
        return 1;
    }
    /* The gateway holds the session now: only it (and git) may see EOF on these. */
    close(0);
    close(1);
    unsigned char status;
    for (;;) {
        ssize_t got = read(sock, &status, 1);
        if (got == 1)
            return status;
        if (got < 0 && errno == EINTR)
            continue;
        say("hostd: the SSH service stopped during this session; check whether it completed\n");
        return 255;
    }
}

/* "ADDRESS PORT" of the TCP peer of the first such socket of the parent (sshd's monitor), or "". */
static void parent_peer(char *out, size_t size) {
    out[0] = '\0';
#if defined(SYS_pidfd_open) && defined(SYS_pidfd_getfd)
    int pidfd = (int)syscall(SYS_pidfd_open, getppid(), 0);
    if (pidfd < 0)
        return;
    for (int fd = 0; fd < 32 && out[0] == '\0'; fd++) {
        int copy = (int)syscall(SYS_pidfd_getfd, pidfd, fd, 0);
        if (copy < 0)
            continue;
        struct sockaddr_storage peer;
        socklen_t length = sizeof(peer);
        char host[INET6_ADDRSTRLEN];
        if (getpeername(copy, (struct sockaddr *)&peer, &length) == 0) {
            if (peer.ss_family == AF_INET) {
                struct sockaddr_in *v4 = (struct sockaddr_in *)&peer;
                if (inet_ntop(AF_INET, &v4->sin_addr, host, sizeof(host)))
                    snprintf(out, size, "%s %u", host, ntohs(v4->sin_port));
            } else if (peer.ss_family == AF_INET6) {
                struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&peer;
                if (inet_ntop(AF_INET6, &v6->sin6_addr, host, sizeof(host)))
                    snprintf(out, size, "%s %u", host, ntohs(v6->sin6_port));
            }
        }
        close(copy);
    }
    close(pidfd);
#else
    (void)size;
#endif
}

static int keys(const char *socket_path, const char *fingerprint) {
    char payload[MAX_MESSAGE];
    char connection[INET6_ADDRSTRLEN + 8];
    size_t used = 0;
    parent_peer(connection, sizeof(connection));
    if (!field(payload, &used, "K") || !field(payload, &used, fingerprint) || !field(payload, &used, connection))
        return 1;
    int sock = connect_to(socket_path);
    if (sock < 0 || !send_message(sock, payload, used, NULL, 0))
        return 1;
    struct timeval limit = {10, 0};
    setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof(limit));
    char buffer[8192];
    for (;;) {
        ssize_t got = read(sock, buffer, sizeof(buffer));
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            return got == 0 ? 0 : 1;
        if (write(1, buffer, (size_t)got) != got)
            return 1;
    }
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "-c") == 0 && strncmp(argv[2], "key ", 4) == 0)
        return session(argv[2] + 4);
    if (argc == 4 && strcmp(argv[1], "keys") == 0)
        return keys(argv[2], argv[3]);
    say("hostd: this account has no shell; use git or hg over SSH\n");
    return 1;
}
