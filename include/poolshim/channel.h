/* Channels on poolshimd (issue #15): a named ring, one writer, any number of readers (broadcast:
 * each message is read by every reader attached when it was sent), in shared memory the daemon
 * makes and owns. In libpoolshim_buffers.so beside the named buffers (poolshim/buffers.h: the
 * same daemon, connection, namespaces and error codes).
 *
 * A message up to half the ring's capacity travels inline in the ring; a larger one goes into a
 * named pinned buffer of exactly its size (one copy, by the sender), and the ring carries the
 * reference: no size limit but the daemon's region. The writer keeps up to four such buffers
 * mapped and reuses one for a message of its size once every reader has passed it and no reader
 * took it (poolshim_channel_take_buffer); they count in the region until the writer closes. A message is received in
 * place (no copy) and stays valid until poolshim_channel_release. poolshim_channel_reserve gives the writer the place
 * itself (no copy on either side), and a named buffer, host or device, can be sent by reference
 * (poolshim_channel_send_buffer). Back-pressure: a send waits (up to its timeout) while the slowest attached reader has
 * not released enough room in the ring, or, for a large message, while the daemon's region has no room for its buffer;
 * nothing is ever dropped (a message larger than the whole region is refused at once). Waits spin briefly, then sleep
 * on a futex. A reader that dies frees its slot at once (the daemon sees the exit); a writer that closes or dies is
 * seen by its readers once they have read what it sent. A daemon restart: the processes already attached keep their
 * channel (the ring is their shared mapping) and go on, but a peer's death is no longer reported to them, and the new
 * daemon does not know the name.
 *
 * Every call returns 0 or a negative POOLSHIM_E* code; poolshim_buffer_error() says why. */
#ifndef POOLSHIM_CHANNEL_H
#define POOLSHIM_CHANNEL_H

#include <stddef.h>
#include <stdint.h>

#include "poolshim/buffers.h"

#ifdef __cplusplus
extern "C" {
#endif

#define POOLSHIM_ETIMEDOUT -10 /* a send found no room, or a receive no message, in time */
#define POOLSHIM_ENOREADER -11 /* a send with no reader attached: refused, nothing sent */
#define POOLSHIM_ECLOSED -12   /* a receive after the writer closed or died and all was read */

typedef struct poolshim_channel poolshim_channel;

/* A new channel, the caller its writer. capacity: the ring's bytes, a power of two from 4 KiB to
 * 4 GiB (a message takes its size plus 8 bytes, rounded to 8; at most half the ring); max_readers:
 * 1 to 64; flags: POOLSHIM_BUFFER_SHARED for the node-wide namespace. The ring's pages are touched
 * here, once (resident from now on, so that no message pays a first-touch fault): measured on a
 * 2-core VM, 190 ms for a 64 MiB ring, 690 ms for 256 MiB. A ring four times the usual message
 * keeps it in cache. */
POOLSHIM_BUFFERS_API int poolshim_channel_create(const char* name, uint64_t capacity, int max_readers, unsigned flags,
                                                 poolshim_channel** out);
/* Attaches the caller as a reader: it receives what is sent from now on. POOLSHIM_EQUOTA when every
 * reader slot is taken. */
POOLSHIM_BUFFERS_API int poolshim_channel_open(const char* name, unsigned flags, poolshim_channel** out);
/* The writer's send of `bytes` bytes, waiting up to timeout_ms (-1: no limit) for room. */
POOLSHIM_BUFFERS_API int poolshim_channel_send(poolshim_channel* c, const void* data, size_t bytes, int timeout_ms);
/* The same with the message gathered from `n` pieces (a header and a payload, say): one record. */
POOLSHIM_BUFFERS_API int poolshim_channel_sendv(poolshim_channel* c, const void* const* parts, const size_t* sizes,
                                                size_t n, int timeout_ms);
/* A named buffer (host or device) sent by reference: no byte is copied; each reader opens the same buffer
 * (POOLSHIM_BUFFER_SHARED buffers for readers of other uids). `head` (optional, up to half the
 * ring) travels in the ring with it (poolshim_channel_message_head). The writer keeps a reference
 * to the buffer until every attached reader has released the message (or the writer closes), so
 * the sender may close or unlink its own at once. A device buffer travels the same way (its
 * memory never touches the host): record its event on the stream that wrote it first
 * (poolshim_buffer_record), and have the reader wait on it (poolshim_buffer_wait on the buffer
 * poolshim_channel_take_buffer gives). */
POOLSHIM_BUFFERS_API int poolshim_channel_send_buffer(poolshim_channel* c, poolshim_buffer* b, const void* head,
                                                      size_t head_bytes, int timeout_ms);
/* Zero copy on the writer's side: room for a message of `bytes` bytes, waited for as a send waits
 * (up to timeout_ms), and *where, the place its bytes go: in the ring (up to half of it), else in a
 * buffer of exactly that size made for it. Nothing is sent until poolshim_channel_commit (its
 * timeout: for the reference of such a buffer; when that fails, the reservation stays, filled:
 * commit again or cancel); poolshim_channel_cancel drops it. One reservation at a time; no other
 * send until it ends. */
POOLSHIM_BUFFERS_API int poolshim_channel_reserve(poolshim_channel* c, size_t bytes, void** where, int timeout_ms);
POOLSHIM_BUFFERS_API int poolshim_channel_commit(poolshim_channel* c, int timeout_ms);
POOLSHIM_BUFFERS_API int poolshim_channel_cancel(poolshim_channel* c);
/* How long this end's waits spin before they sleep on the futex (default 20): a message or room
 * that comes within it is seen without a wake-up, at the cost of a busy core while it spins. 0 to
 * 1,000,000 microseconds. */
POOLSHIM_BUFFERS_API int poolshim_channel_set_spin(poolshim_channel* c, int microseconds);
/* A reader's next message, in place: *data and *bytes, valid until poolshim_channel_release (one
 * message at a time per reader). A host buffer sent by reference: its mapping, opened here; a device
 * buffer: its device pointer in the device's primary context, not for the CPU to read. */
POOLSHIM_BUFFERS_API int poolshim_channel_recv(poolshim_channel* c, const void** data, size_t* bytes, int timeout_ms);
POOLSHIM_BUFFERS_API int poolshim_channel_release(poolshim_channel* c);
/* The buffer of the message held, when it was sent by reference (POOLSHIM_ENOENT: inline): the
 * reference becomes the caller's (poolshim_buffer_close ends it) and outlives the message's release;
 * a device buffer's only way to the reader (poolshim_buffer_data is its device pointer). */
POOLSHIM_BUFFERS_API int poolshim_channel_take_buffer(poolshim_channel* c, poolshim_buffer** out);
/* The head sent with a buffer by reference, for the message held (POOLSHIM_ENOENT: sent inline). */
POOLSHIM_BUFFERS_API int poolshim_channel_message_head(const poolshim_channel* c, const void** head, size_t* bytes);
/* Leaves the channel (a writer closes it for its readers) and frees *c. */
POOLSHIM_BUFFERS_API int poolshim_channel_close(poolshim_channel* c);

#ifdef __cplusplus
}
#endif

#endif /* POOLSHIM_CHANNEL_H */
