#!/usr/bin/env bash
# A SLURM job array that segments a folder of micrographs in N shards, then merges them.
#   sbatch --array=1-N scripts/slurm-segment.sh INPUT_FOLDER OUTPUT_FOLDER [extra segment flags]
# Each task writes OUTPUT_FOLDER/shard-K (its run files even when no input falls to it); after
# the array, run
#   nanofind merge OUTPUT_FOLDER/shard-* -o OUTPUT_FOLDER/all
# or submit the merge with --dependency=afterok:<array job id> (docs/cluster.md).
#SBATCH --job-name=nanofind
#SBATCH --cpus-per-task=2
#SBATCH --mem=8G
#SBATCH --output=nanofind-%A_%a.log
set -uo pipefail
INPUT=$1; OUTPUT=$2; shift 2
N=${SLURM_ARRAY_TASK_COUNT:?submit as an array: sbatch --array=1-N}
K=${SLURM_ARRAY_TASK_ID:?submit as an array: sbatch --array=1-N}
NANOFIND=${NANOFIND:-nanofind}
# segment plans its memory from --memory (default: a quarter of the node's RAM, not what SLURM
# gave the task): unless the flags say otherwise, 90 % of the task's allocation.
MEMORY=()
if [[ " $* " != *" --memory"* ]]; then
  MB=${SLURM_MEM_PER_NODE:-}
  if [[ -z "$MB" && -n "${SLURM_MEM_PER_CPU:-}" ]]; then MB=$(( SLURM_MEM_PER_CPU * ${SLURM_CPUS_PER_TASK:-1} )); fi
  # SLURM counts MiB, --memory GB (10^9 bytes).
  if [[ -n "$MB" ]]; then MEMORY=(--memory "$(awk -v mb="$MB" 'BEGIN { printf "%.2f", mb * 1048576 * 0.9 / 1e9 }')"); fi
fi
"$NANOFIND" segment "$INPUT" -o "$OUTPUT/shard-$K" --shard "$K/$N" --threads "${SLURM_CPUS_PER_TASK:-2}" ${MEMORY[@]+"${MEMORY[@]}"} "$@"
status=$?
# Exit 1: the shard finished, but some inputs could not be segmented (each named on one line
# above). The task still succeeds, so that a merge submitted with afterok runs.
if [[ $status -eq 1 ]]; then
  echo "nanofind: shard $K/$N finished; some inputs failed (named above)" >&2
  exit 0
fi
exit $status
