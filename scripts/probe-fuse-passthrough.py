#!/usr/bin/python3
"""Can this process register a FUSE passthrough backing file? (issue 12, docs/design/overlay.md)

Mounts a bare FUSE file system on a temporary directory, answers the kernel's INIT with
FUSE_PASSTHROUGH (max_stack_depth 1), then asks /dev/fuse for a backing id of an ordinary
file with the FUSE_DEV_IOC_BACKING_OPEN ioctl, which is what a server must do before it can
answer an OPEN with FOPEN_PASSTHROUGH. Prints what the kernel said and unmounts.

    unshare -rm scripts/probe-fuse-passthrough.py     as an unprivileged user (root of a user
                                                      namespace): the rootless case
    scripts/probe-fuse-passthrough.py                 as root of the initial namespace

Exit status 0 when the ioctl gave a backing id, 1 when the kernel refused it, 2 when the
probe could not get that far (mount or INIT failed).
"""
import ctypes
import errno
import fcntl
import os
import struct
import sys
import tempfile

FUSE_INIT = 26
FUSE_KERNEL_MAJOR = 7
FUSE_INIT_EXT = 1 << 30
FUSE_PASSTHROUGH = 1 << 37  # in flags2: bit 5
# _IOW(229, 1, struct fuse_backing_map { int32 fd; uint32 flags; uint64 padding; })
FUSE_DEV_IOC_BACKING_OPEN = (1 << 30) | (16 << 16) | (229 << 8) | 1
MNT_DETACH = 2


def main():
    libc = ctypes.CDLL(None, use_errno=True)
    mnt = tempfile.mkdtemp(prefix="fuse-probe.")
    dev = os.open("/dev/fuse", os.O_RDWR | os.O_CLOEXEC)
    opts = f"fd={dev},rootmode=40000,user_id=0,group_id=0".encode()
    if libc.mount(b"probe", mnt.encode(), b"fuse", 0, opts) != 0:
        err = ctypes.get_errno()
        print(f"mount of fuse on {mnt} failed: {os.strerror(err)}")
        os.rmdir(mnt)
        return 2
    try:
        return negotiate_and_probe(dev)
    finally:
        libc.umount2(mnt.encode(), MNT_DETACH)
        os.close(dev)
        os.rmdir(mnt)


def negotiate_and_probe(dev):
    req = os.read(dev, 1 << 20)
    length, opcode, unique = struct.unpack_from("<IIQ", req, 0)
    if opcode != FUSE_INIT:
        print(f"expected INIT from the kernel, got opcode {opcode}")
        return 2
    major, minor, _readahead, flags = struct.unpack_from("<IIII", req, 40)
    flags2 = struct.unpack_from("<I", req, 56)[0] if flags & FUSE_INIT_EXT else 0
    offered = (flags2 << 32 | flags) & FUSE_PASSTHROUGH != 0
    print(f"kernel FUSE {major}.{minor}, offers FUSE_PASSTHROUGH: {offered}")
    # fuse_init_out of 7.40: major, minor, max_readahead, flags, max_background,
    # congestion_threshold, max_write, time_gran, max_pages, map_alignment, flags2,
    # max_stack_depth, 6 unused words.
    want = FUSE_INIT_EXT | FUSE_PASSTHROUGH if offered else 0
    out = struct.pack("<IIIIHHIIHHII24x", FUSE_KERNEL_MAJOR, minor, 0, want & 0xFFFFFFFF,
                      16, 12, 1 << 20, 1, 256, 0, want >> 32, 1)
    os.write(dev, struct.pack("<IiQ", 16 + len(out), 0, unique) + out)
    if not offered:
        return 1
    backing = os.open("/proc/self/exe", os.O_RDONLY | os.O_CLOEXEC)
    try:
        arg = bytearray(struct.pack("<iIQ", backing, 0, 0))
        backing_id = fcntl.ioctl(dev, FUSE_DEV_IOC_BACKING_OPEN, arg)
    except OSError as e:
        print(f"FUSE_DEV_IOC_BACKING_OPEN as uid {os.getuid()} (euid {os.geteuid()}): "
              f"{errno.errorcode.get(e.errno, e.errno)} ({e.strerror})")
        return 1
    finally:
        os.close(backing)
    print(f"FUSE_DEV_IOC_BACKING_OPEN as uid {os.getuid()}: backing id {backing_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
