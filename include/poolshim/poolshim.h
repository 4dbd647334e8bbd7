/* poolshim public C API.
 * Version of the product; the allocator entry points that a program may call on purpose (instead
 * of through interception) are added here as they land. C-compatible, no C++ in this header. */
#ifndef POOLSHIM_POOLSHIM_H
#define POOLSHIM_POOLSHIM_H

#define POOLSHIM_VERSION_MAJOR 0
#define POOLSHIM_VERSION_MINOR 1
#define POOLSHIM_VERSION_PATCH 0

#endif /* POOLSHIM_POOLSHIM_H */
