/* uf_journal_stream IDENTIFIER COMMAND [ARG…]: run COMMAND with its stdout and stderr connected
 * to the journal as a stream, as systemd connects a service's (StandardOutput=journal), with
 * JOURNAL_STREAM set to the stream's "DEV:INO" (systemd.exec(5)) — what usbforged sees under
 * its unit. systemd-cat opens the same stream but does not set JOURNAL_STREAM. Exit status:
 * COMMAND's (it is exec'd), or 127 when the stream or the exec fails. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <systemd/sd-journal.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: uf_journal_stream IDENTIFIER COMMAND [ARG...]\n");
		return 2;
	}
	int fd = sd_journal_stream_fd(argv[1], LOG_INFO, 1);
	if (fd < 0) {
		fprintf(stderr, "uf_journal_stream: cannot connect to the journal: %s\n", strerror(-fd));
		return 127;
	}
	struct stat st;
	char v[64];
	if (fstat(fd, &st) < 0) {
		fprintf(stderr, "uf_journal_stream: fstat: %s\n", strerror(errno));
		return 127;
	}
	snprintf(v, sizeof(v), "%llu:%llu", (unsigned long long)st.st_dev, (unsigned long long)st.st_ino);
	if (setenv("JOURNAL_STREAM", v, 1) < 0 || dup2(fd, STDOUT_FILENO) < 0 || dup2(fd, STDERR_FILENO) < 0) {
		fprintf(stderr, "uf_journal_stream: %s\n", strerror(errno));
		return 127;
	}
	if (fd > STDERR_FILENO)
		close(fd);
	execvp(argv[2], argv + 2);
	fprintf(stderr, "uf_journal_stream: cannot run %s: %s\n", argv[2], strerror(errno)); /* to the journal */
	return 127;
}
