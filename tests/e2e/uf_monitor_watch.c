/* uf_monitor_watch: the hotplug watcher (usb/monitor.c) as a tiny program for the e2e guest.
 *   uf_monitor_watch [-v] SECONDS
 * Opens a monitor, prints "# ready source=kernel libusb=1" once it listens, then one line per
 * event ("usb_add 2-1", "usb_remove 2-1", "add sda", "remove sda", "change sda"), each flushed,
 * until SECONDS have passed or SIGTERM/SIGINT arrives; then frees the monitor and exits 0.
 * -v: the monitor's debug log on stderr (e.g. a USB report dropped as already delivered).
 * Exit 1 when the monitor cannot be opened, 2 on a usage error. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "usb/monitor.h"
#include "util/log.h"

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void print_event(void *userdata, const struct usb_monitor_event *ev)
{
	(void)userdata;
	const char *name = ev->port_path ? ev->port_path : ev->sysname;
	printf("%s %s\n", usb_monitor_action_name(ev->action), name ? name : "?");
	fflush(stdout);
}

int main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "-v") == 0) {
		log_set_max_level(LOG_LVL_DEBUG);
		argc--;
		argv++;
	}
	char *end = NULL;
	unsigned long secs = argc == 2 ? strtoul(argv[1], &end, 10) : 0;
	if (argc != 2 || !end || *end != '\0' || secs == 0 || secs > 86400) {
		fprintf(stderr, "usage: uf_monitor_watch [-v] SECONDS (1 to 86400)\n");
		return 2;
	}
	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	int sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sfd < 0) {
		fprintf(stderr, "uf_monitor_watch: signalfd: %s\n", strerror(errno));
		return 1;
	}
	struct usb_monitor *m = NULL;
	int r = usb_monitor_new(NULL, &m);
	if (r < 0) {
		fprintf(stderr, "uf_monitor_watch: cannot open the monitor: %s\n", strerror(-r));
		close(sfd);
		return 1;
	}
	printf("# ready source=%s libusb=%d\n", usb_monitor_source(m), usb_monitor_has_libusb(m));
	fflush(stdout);

	double deadline = now() + (double)secs;
	for (;;) {
		double left = deadline - now();
		if (left <= 0)
			break;
		struct pollfd p[2] = { { usb_monitor_fd(m), POLLIN, 0 }, { sfd, POLLIN, 0 } };
		int k = poll(p, 2, (int)(left * 1000) + 1);
		if (k < 0 && errno != EINTR) {
			fprintf(stderr, "uf_monitor_watch: poll: %s\n", strerror(errno));
			break;
		}
		if (k > 0 && (p[1].revents & POLLIN))
			break;
		if (k > 0 && (p[0].revents & POLLIN))
			usb_monitor_process(m, print_event, NULL);
	}
	usb_monitor_free(m);
	close(sfd);
	return 0;
}
