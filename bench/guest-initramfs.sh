#!/bin/sh
# Build the benchmark guest's initramfs, for bench/guest-images.ts: the test guest's packaging
# (test/fixtures/guest/build-initramfs.sh: static busybox, /dev, /proc, /sys, cpio) with this
# script's files added — a little of a real system's /etc, /data and an init that runs a small,
# seeded workload in steps instead of the test guest's counter.
#
#   guest-initramfs.sh OUT.cpio.gz
#
# Kernel command line parameters read by init:
#   mf.seed=N    varies the data a guest writes (siblings differ by seed)
#   mf.scale=N   amount of work: log lines, heap churn and archives grow with it
#   mf.role=R    web (log, heap, archives, keys) or db (the same, and it builds, sorts and
#                keeps a table, and keeps a copy of its log)
#   mf.steps=N   steps to run; after step k init prints "memfabric step k done" on ttyS0 and
#                waits for a line on ttyS1 before the next step (the host snapshots RAM there)
#
# Needs busybox-static and cpio (Debian: apt-get install busybox-static cpio).
set -eu
out=$1
pack=$(dirname "$0")/../test/fixtures/guest/build-initramfs.sh
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/etc" "$root/data"
# a little of a real system's configuration, the same in every guest
printf 'root:x:0:0:root:/root:/bin/sh\nwww:x:33:33:www:/var/www:/bin/false\n' > "$root/etc/passwd"
printf 'memfabric-guest\n' > "$root/etc/hostname"
cat > "$root/init" <<'INIT'
#!/bin/sh
/bin/busybox mount -t devtmpfs devtmpfs /dev 2>/dev/null
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox --install -s /bin
exec </dev/console >/dev/console 2>&1
export PATH=/bin
seed=1; scale=1; steps=1; role=web
for arg in $(cat /proc/cmdline); do
  case $arg in
    mf.seed=*) seed=${arg#mf.seed=} ;;
    mf.scale=*) scale=${arg#mf.scale=} ;;
    mf.steps=*) steps=${arg#mf.steps=} ;;
    mf.role=*) role=${arg#mf.role=} ;;
  esac
done
mount -t tmpfs -o size=75% tmpfs /data
echo "memfabric bench guest up: seed $seed scale $scale role $role steps $steps"

# An access log: text, compressible, different in every guest (the seed is in every line).
log_lines () { # FROM COUNT
  seq "$1" $(($1 + $2 - 1)) | awk -v s="$seed" '{
    printf "10.%d.%d.%d - u%04d [01/Jan/2026:%02d:%02d:%02d +0000] \"GET /api/v1/items/%d HTTP/1.1\" %d %d\n",
      ($1 * 7 + s) % 256, ($1 * 13 + s) % 256, ($1 * s) % 256, ($1 * 31 + s * 17) % 10000,
      ($1 / 3600) % 24, ($1 / 60) % 60, $1 % 60, ($1 * 977 + s) % 100000, ($1 % 17 == 0) ? 404 : 200, ($1 * 7919 + s) % 65536
  }'
}

# Process heap churn: awk builds a large table, sorts part of it, exits (its pages are freed,
# their content stays in guest RAM until reused).
heap () { # ENTRIES
  awk -v n="$1" -v s="$seed" 'BEGIN { for (i = 0; i < n; i++) t[i] = sprintf("session-%08d-%08x", i, (i * 2654435761 + s) % 4294967296); print length(t) }' > /dev/null
  seq 1 "$1" | awk -v s="$seed" '{ print ($1 * 2654435761 + s) % 1000003, $1 }' | sort -n | tail -n 1 > /dev/null
}

step1 () {
  dmesg > /data/boot.log
  find / -xdev > /data/files.txt
  log_lines 1 $((scale * 60000)) > /data/access.log
  heap $((scale * 40000))
  # a backup of the system, the same input in every guest; then the guest's own compressed logs
  tar cf - /bin/busybox /etc 2>/dev/null | gzip -6 > /data/system.tar.gz
  gzip -6 -c /data/access.log > /data/access.log.1.gz
  # secrets and session keys: random bytes, a little per guest
  dd if=/dev/urandom of=/data/keys bs=4096 count=$((scale * 64)) 2>/dev/null
  if [ "$role" = db ]; then
    seq 1 $((scale * 50000)) | awk -v s="$seed" '{ printf "%010d|item-%d|%d.%02d|%s\n", ($1 * 2654435761 + s) % 4294967296, $1, ($1 * 37 + s) % 1000, $1 % 100, ($1 % 3 == 0) ? "in-stock" : "backorder" }' | sort > /data/table.sorted
    cp /data/access.log /data/access.log.bak
  fi
  sha256sum /data/* > /data/SHA256SUMS
  sync
}

step2 () {
  # more traffic, the old log rotated away, fresh heap churn, new keys
  log_lines $((scale * 60000 + 1)) $((scale * 30000)) >> /data/access.log
  gzip -6 -c /data/access.log > /data/access.log.2.gz
  rm -f /data/access.log.1.gz
  heap $((scale * 30000))
  dd if=/dev/urandom of=/data/keys bs=4096 count=$((scale * 16)) 2>/dev/null
  ps > /data/ps.txt
  sha256sum /data/* > /data/SHA256SUMS
  sync
}

step3 () {
  log_lines $((scale * 90000 + 1)) $((scale * 30000)) >> /data/access.log
  heap $((scale * 30000))
  sync
}

k=1
while [ "$k" -le "$steps" ]; do
  "step$k"
  echo "memfabric step $k done"
  read -r _go < /dev/ttyS1
  k=$((k + 1))
done
echo "memfabric all steps done"
while true; do sleep 3600; done
INIT
sh "$pack" "$out" "$root"
