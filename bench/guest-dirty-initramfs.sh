#!/bin/sh
# Build the live-migration benchmark guest's initramfs, for bench/qemu-live.ts: the test
# guest's packaging (test/fixtures/guest/build-initramfs.sh) with an init that keeps rewriting
# guest memory at a set rate, and prints "tick N" on ttyS0 once a second.
#
#   guest-dirty-initramfs.sh OUT.cpio.gz
#
# Kernel command line parameters read by init:
#   mf.dirty=N   MiB per second to rewrite (default 16), in 10 steps a second
#   mf.wss=N     working set in MiB (default 64): a file in a tmpfs, rewritten in a cycle
# Each step copies random pages (a 4 MiB pool drawn once from /dev/urandom) into the next
# pages of the working set, from a shifting position in the pool, so a page's content changes
# every time it is rewritten (no benefit from rewriting the same bytes) and does not compress.
# Needs busybox-static and cpio (Debian: apt-get install busybox-static cpio).
set -eu
out=$1
pack=$(dirname "$0")/../test/fixtures/guest/build-initramfs.sh
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
cat > "$root/init" <<'INIT'
#!/bin/sh
/bin/busybox mount -t devtmpfs devtmpfs /dev 2>/dev/null
/bin/busybox mount -t proc proc /proc
/bin/busybox --install -s /bin
exec </dev/console >/dev/console 2>&1
export PATH=/bin
dirty=16; wss=64
for arg in $(cat /proc/cmdline); do
  case $arg in
    mf.dirty=*) dirty=${arg#mf.dirty=} ;;
    mf.wss=*) wss=${arg#mf.wss=} ;;
  esac
done
mkdir -p /work
mount -t tmpfs -o size=$((wss + 8))m tmpfs /work
dd if=/dev/urandom of=/work/pool bs=4096 count=1024 2>/dev/null
dd if=/dev/zero of=/work/set bs=1048576 count="$wss" 2>/dev/null
pages=$((dirty * 256 / 10))   # per step
[ "$pages" -le 512 ] || pages=512
[ "$pages" -ge 1 ] || pages=1
set_pages=$((wss * 256))
echo "memfabric dirty guest up: $dirty MiB/s over $wss MiB ($pages pages a step)"
pos=0; step=0; tick=0; shift=0
while true; do
  dd if=/work/pool of=/work/set bs=4096 skip=$shift seek=$pos count=$pages conv=notrunc 2>/dev/null
  pos=$((pos + pages)); [ $((pos + pages)) -le "$set_pages" ] || pos=0
  shift=$(((shift + 37) % (1024 - pages)))
  step=$((step + 1))
  if [ $((step % 10)) -eq 0 ]; then tick=$((tick + 1)); echo "tick $tick"; fi
  usleep 100000
done
INIT
sh "$pack" "$out" "$root"
