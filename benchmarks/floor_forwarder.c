/* The C floor of benchmarks/floor.py: receive an RTP packet, send N rewritten copies.

   floor_forwarder sendto|sendmmsg FD COUNTERS PORT...

   FD is an inherited UDP socket bound on 127.0.0.1 (it receives and sends, like the SFU's one port);
   COUNTERS a 16-byte file mapped shared, where two uint64 counters (ingress, egress packets) are kept
   for the parent to read; PORT... the subscribers' ports on 127.0.0.1. For each ingress packet and each
   subscriber: memcpy, overwrite SSRC and sequence number, then one sendto each, or one sendmmsg for all.
   No SRTP, no parsing beyond the fixed header: the least any forwarder must do per packet. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_SUBS 256
#define MTU 2048

static struct sockaddr_in dst[MAX_SUBS];
static unsigned char out[MAX_SUBS][MTU];
static struct iovec iov[MAX_SUBS];
static struct mmsghdr msgs[MAX_SUBS];

int main(int argc, char **argv) {
    if (argc < 5 || argc - 4 > MAX_SUBS) {
        fprintf(stderr, "usage: %s sendto|sendmmsg FD COUNTERS PORT... (at most %d)\n", argv[0], MAX_SUBS);
        return 2;
    }
    int batch = strcmp(argv[1], "sendmmsg") == 0, fd = atoi(argv[2]), n = argc - 4;
    int cfd = open(argv[3], O_RDWR);
    volatile uint64_t *count = cfd < 0 ? MAP_FAILED
        : mmap(NULL, 16, PROT_READ | PROT_WRITE, MAP_SHARED, cfd, 0);
    if (count == MAP_FAILED) {
        perror("counters");
        return 1;
    }
    for (int i = 0; i < n; i++) {
        dst[i].sin_family = AF_INET;
        dst[i].sin_port = htons((uint16_t)atoi(argv[4 + i]));
        dst[i].sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        iov[i].iov_base = out[i];
        msgs[i].msg_hdr.msg_name = &dst[i];
        msgs[i].msg_hdr.msg_namelen = sizeof dst[i];
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    unsigned char in[MTU];
    for (;;) {
        ssize_t len = recv(fd, in, sizeof in, 0);
        if (len < 12) {
            if (len < 0 && errno != EINTR) {
                perror("recv");
                return 1;
            }
            continue;
        }
        uint16_t seq;
        uint32_t ssrc;
        memcpy(&seq, in + 2, 2);
        memcpy(&ssrc, in + 8, 4);
        uint64_t sent = 0;
        for (int i = 0; i < n; i++) {
            uint16_t s = htons((uint16_t)(ntohs(seq) + 1000 * i));  /* a per-subscriber sequence space */
            uint32_t r = htonl(ntohl(ssrc) ^ (0x5000u + (uint32_t)i));  /* and SSRC */
            memcpy(out[i], in, (size_t)len);
            memcpy(out[i] + 2, &s, 2);
            memcpy(out[i] + 8, &r, 4);
            if (batch)
                iov[i].iov_len = (size_t)len;
            else if (sendto(fd, out[i], (size_t)len, 0, (struct sockaddr *)&dst[i], sizeof dst[i]) == len)
                sent++;
        }
        for (int done = 0; batch && done < n; ) {
            int r = sendmmsg(fd, msgs + done, (unsigned)(n - done), 0);
            if (r <= 0)
                break;
            done += r;
            sent += (uint64_t)r;
        }
        count[0] += 1;
        count[1] += sent;
    }
}
