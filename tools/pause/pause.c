/* The pause process of localkube's real node: PID 1 of every pod sandbox.
 *
 * It holds the pod's namespaces open, reaps the zombies of processes that end up as its children (PID 1
 * of a PID namespace inherits orphans), and exits at once on SIGTERM or SIGINT so a sandbox stops without
 * waiting out a grace period. It must not do anything else: it runs in every pod, with no libc in the
 * image, hence a static binary.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void stop(int signum) {
    (void)signum;
    _exit(0);
}

static void reap(int signum) {
    (void)signum;
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
}

static int on(int signum, void (*handler)(int)) {
    struct sigaction action;
    memset(&action, 0, sizeof(action));
    action.sa_handler = handler;
    action.sa_flags = SA_RESTART;
    sigemptyset(&action.sa_mask);
    return sigaction(signum, &action, NULL);
}

int main(void) {
    if (on(SIGTERM, stop) < 0 || on(SIGINT, stop) < 0 || on(SIGCHLD, reap) < 0) {
        perror("pause: sigaction");
        return 1;
    }
    for (;;) {
        pause();
    }
}
