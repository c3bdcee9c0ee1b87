#!/usr/bin/env bash
# make test-cluster: a single-node SLURM cluster on this machine runs a 4-task job array of
# `nanofind segment --shard K/4` over a folder, `nanofind merge` combines the shards, and the
# merged particles.csv must equal a single-process run's. Installs Debian's slurm-wlm and munge
# if missing, starts munged, slurmctld and slurmd for the test only, and stops what it started.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$(pwd)/.build/release/nanofind
WORK=$(mktemp -d /tmp/nanofind-slurm-XXXXXX)
chmod 755 "$WORK"  # the munge user must reach its socket folder
started=()
cleanup() {
  for pid in "${started[@]}"; do kill "$pid" 2>/dev/null || true; done
  sleep 1
  for pid in "${started[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

if ! command -v slurmctld >/dev/null 2>&1 || ! command -v munged >/dev/null 2>&1; then
  command -v apt-get >/dev/null 2>&1 || { echo "test-cluster: needs slurm-wlm and munge (apt-get not found)"; exit 1; }
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq slurm-wlm munge
fi
[ "$(id -u)" -eq 0 ] || { echo "test-cluster: run as root (it starts slurmctld and slurmd)"; exit 1; }

# munge: a key if there is none, and a daemon of our own on a private socket.
[ -f /etc/munge/munge.key ] || { mkdir -p /etc/munge; dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null;
  chown munge:munge /etc/munge/munge.key 2>/dev/null || true; chmod 400 /etc/munge/munge.key; }
mkdir -p "$WORK/munge"; chown munge:munge "$WORK/munge" 2>/dev/null || true
SOCKET="$WORK/munge/munge.socket"
runuser -u munge -- munged --foreground --socket="$SOCKET" --pid-file="$WORK/munge/munged.pid" \
  --log-file="$WORK/munge/munged.log" --seed-file="$WORK/munge/seed" &
started+=($!)
sleep 1

HOST=$(hostname -s)
CPUS=$(nproc)
MEMORY=$(awk '/MemTotal/ { print int($2 / 1024) }' /proc/meminfo)
mkdir -p "$WORK/state" "$WORK/spool" "$WORK/log"
cat > "$WORK/slurm.conf" <<CONF
ClusterName=nanofind
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$SOCKET
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
SlurmctldPort=16817
SlurmdPort=16818
StateSaveLocation=$WORK/state
SlurmdSpoolDir=$WORK/spool
SlurmctldPidFile=$WORK/slurmctld.pid
SlurmdPidFile=$WORK/slurmd.pid
SlurmctldLogFile=$WORK/log/slurmctld.log
SlurmdLogFile=$WORK/log/slurmd.log
NodeName=$HOST CPUs=$CPUS RealMemory=$MEMORY State=UNKNOWN
PartitionName=test Nodes=$HOST Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
CONF
export SLURM_CONF="$WORK/slurm.conf"
slurmctld -D -i -f "$SLURM_CONF" > "$WORK/log/slurmctld.out" 2>&1 &
started+=($!)
sleep 2
slurmd -D -f "$SLURM_CONF" > "$WORK/log/slurmd.out" 2>&1 &
started+=($!)
for _ in $(seq 60); do sinfo -h -o %T 2>/dev/null | grep -q idle && break; sleep 1; done
sinfo -h -o %T | grep -q idle || { echo "test-cluster: the SLURM node did not come up"; tail -n 20 "$WORK"/log/*; exit 1; }

# Input: sim-v1 test images when ../shared is there, else small generated ones.
DATA="$WORK/data"; mkdir -p "$DATA"
if [ -d ../shared/data/sim-v1/test ]; then
  cp ../shared/data/sim-v1/test/*.mrc "$DATA/"
else
  python3 - "$DATA" <<'PY'
import math, random, struct, sys
for i in range(24):
    random.seed(i); w = h = 256
    vals = [1000 + 30 * random.random() for _ in range(w * h)]
    for (cx, cy) in [(random.randrange(w), random.randrange(h)) for _ in range(3)]:
        for y in range(h):
            for x in range(w):
                if (x - cx) ** 2 + (y - cy) ** 2 < 900: vals[y * w + x] += 150 * math.cos(2.3 * x) * math.cos(2.3 * y)
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d), }" % (h, w)
    header += " " * (63 - (10 + len(header)) % 64) + "\n"
    with open(f"{sys.argv[1]}/img{i:02d}.npy", "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + struct.pack(f"<{w*h}f", *vals))
PY
fi

OUT="$WORK/out"; mkdir -p "$OUT"
NANOFIND="$BIN" sbatch --wait --array=1-4 --output="$WORK/log/task-%a.log" scripts/slurm-segment.sh "$DATA" "$OUT" --threads 1 > "$WORK/log/sbatch.out"
"$BIN" merge "$OUT"/shard-* -o "$OUT/all" > /dev/null
"$BIN" segment "$DATA" -o "$OUT/single" > /dev/null
images=$(ls "$DATA" | wc -l)
if cmp -s "$OUT/all/particles.csv" "$OUT/single/particles.csv"; then
  echo "test-cluster: 1 passed, 0 failed: a 4-task SLURM array over $images images merged equals the single run ($(($(wc -l < "$OUT/all/particles.csv") - 1)) particles)"
else
  echo "test-cluster: 0 passed, 1 failed: merged shards differ from the single run"
  diff "$OUT/all/particles.csv" "$OUT/single/particles.csv" | head
  exit 1
fi
